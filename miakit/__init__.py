"""miakit: membership inference attacks on diffusion models (Hu & Pang 2023), reproduced.

Members are the positive class; every attack score is oriented so that higher means "member"
(see ``miakit.attacks``).
"""
import warnings

# diffusers imports tqdm.auto for pipelines miakit never runs; in a notebook without ipywidgets
# that import warns "IProgress not found" into every executed chapter. miakit's own bars are
# plain text (miakit.core.progress), so the warning says nothing about them.
warnings.filterwarnings("ignore", message="IProgress not found")

from miakit import attacks, diffusion  # noqa: F401, E402
from miakit.core import config, data, store  # noqa: E402
from miakit.evidence import metrics  # noqa: E402
from miakit.diffusion import unet  # noqa: E402
from miakit.training import train  # noqa: E402

__version__ = "0.1.0"
