"""The likelihood attack (Hu & Pang 2023): member score = log p(x) under the probability-flow
ODE (``miakit.diffusion.likelihood``), higher for members already. Its one setting is the solver's,
fixed beforehand; its queries are adaptive (each image's own number of drift evaluations)."""
from __future__ import annotations

import dataclasses

import numpy as np

from miakit.diffusion.likelihood import likelihood
from miakit.attacks.base import Attack, register


def _scorer(model, family, x, grid, context):
    (setting,) = grid
    r = likelihood(model, family, x, setting["lik_rtol"], setting["lik_atol"], setting["lik_method"], context.seed,
                   setting["lik_probes"], batch_size=setting.get("lik_batch", 64), progress_bar=context.progress_bar,
                   ids=context.ids)
    return np.asarray(r.logp, dtype=np.float64)[:, None]


def _grid(settings):
    c = dataclasses.asdict(settings.likelihood)
    return [{k: c[k] for k in ("lik_method", "lik_rtol", "lik_atol", "lik_probes", "lik_batch")}]


register(Attack(name="likelihood", label="likelihood", reference="Hu & Pang 2023 (this paper)", scorer=_scorer,
                grid=_grid, queries=lambda setting: None, whole_split=False,
                paper=True, default_in=("dp", "own"), form=lambda family: "the paper's"))
