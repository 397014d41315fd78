"""python -m miakit --profile P [NAME ...]: every notebook parameter's type, value in profile P and meaning."""
from miakit.core.config import main

main()
