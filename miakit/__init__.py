"""miakit: membership inference attacks on diffusion models (Hu & Pang 2023), reproduced.

Members are the positive class; every attack score is oriented so that higher means "member"
(see ``miakit.attacks``).
"""
from miakit import attacks, diffusion  # noqa: F401
from miakit.core import config, data, store
from miakit.evidence import metrics
from miakit.diffusion import unet
from miakit.training import train

__version__ = "0.1.0"
