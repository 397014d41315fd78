"""miakit: membership inference attacks on diffusion models (Hu & Pang 2023), reproduced.

Members are the positive class; every attack score is oriented so that higher means "member"
(see ``miakit.attacks``).
"""
from . import attacks, config, data, diffusion, metrics, models, store, train  # noqa: F401

__version__ = "0.1.0"
