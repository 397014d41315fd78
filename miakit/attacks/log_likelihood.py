"""The likelihood attack (Hu & Pang 2023): member score = log p(x) under the probability-flow
ODE (``miakit.diffusion.likelihood``), higher for members already. Its one setting is the solver's,
fixed beforehand, so it chooses nothing on data and needs no validation part: an adaptive ODE
solve per image is too costly for whole split parts, and ``scoring.score_split`` scores it on
seeded random subsets of at most ``lik_max_images`` members and as many nonmembers (validation
and test together). Its queries are adaptive (each image's own number of drift evaluations,
reported per image as ``nfe`` beside its bits/dim ``bpd``)."""
from __future__ import annotations

import dataclasses

import numpy as np

from miakit.diffusion.likelihood import likelihood
from miakit.attacks.base import Attack, register

# the solver settings a likelihood setting holds (the likelihood config's other knob, lik_max_images,
# chooses the images, not the computation); lik_batch is kept because batched rounding moves log p
SOLVER = ("lik_method", "lik_rtol", "lik_atol", "lik_probes", "lik_batch")


def setting_of(config) -> dict:
    """The one setting of a ``LikelihoodConfig`` (its solver knobs)."""
    c = dataclasses.asdict(config)
    return {k: c[k] for k in SOLVER}


def _scorer(model, family, x, grid, context):
    (setting,) = grid
    r = likelihood(model, family, x, setting["lik_rtol"], setting["lik_atol"], setting["lik_method"], context.seed,
                   setting["lik_probes"], batch_size=setting.get("lik_batch", 64), progress_bar=context.progress_bar,
                   ids=context.ids)
    return np.asarray(r.logp, dtype=np.float64)[:, None], {"bpd": r.bpd, "nfe": r.nfe}


def _grid(settings):
    return [setting_of(settings.likelihood)]


register(Attack(name="likelihood", label="likelihood", reference="Hu & Pang 2023 (this paper)", scorer=_scorer,
                grid=_grid, queries=lambda setting: None,
                max_images=lambda settings: settings.likelihood.lik_max_images, extras=("bpd", "nfe"),
                paper=True, default_in=("dp", "own"), form=lambda family: "the paper's"))
