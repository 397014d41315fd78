"""PIA and PIAN (Kong et al., ICLR 2024, "An efficient membership inference attack for the
diffusion model by proximal initialization"), as their DDPM code defines them (kong13661/PIA
``DDPM/components.py``, classes ``PIA`` and ``PIAN``; defaults in ``DDPM/attack.py``).

How we read it. The model's own noise prediction on the clean image at step 0 is the "proximal
initial" noise, ``e0 = eps_theta(x0, 0)`` (``Family.predict_noise``: the network's output for the
epsilon-prediction families, ``-s(t) * score`` for the others). The image is noised with it
deterministically to step t and the model asked again:

    x_t = a(t) x0 + s(t) e0    (DDPM: a = sqrt(abar_t), s = sqrt(1 - abar_t)),
    distance_{t,p} = sum_pixels |eps_theta(x_t, t) - e0|^p,  lower = member; score = -distance.

PIAN first rescales ``e0`` per image to the mean absolute value of a standard Gaussian,
``e0 / mean|e0| * sqrt(2/pi)``. Their defaults: p = 4; attack_num = 30 steps at interval = 10,
i.e. t = 10, 20, ..., 300 of 1000, each step scored on its own and the best one reported on the
evaluation data itself (our grid ``STEPS`` x ``POWERS`` is searched on validation data instead).
Queries per image: one for ``e0`` (shared by every step) plus one per step, so 2 for one
setting. The same formulas run on every family (the discrete form); their continuous-time form on
the probability-flow ODE is ``miakit.attacks.continuous`` (``pia_ode``, ``pian_ode``)."""
from __future__ import annotations

import math

import numpy as np
import torch

from miakit.attacks.base import Attack, batched, discrete_form, family_steps, member_score_from_loss, over_steps, register

STEPS = (10, 20, 50, 100, 200, 300, 500)  # of the paper's 1000 (PIA's default for DDPM: 200)
POWERS = (2, 4)


def initial_noise(model, family, x: torch.Tensor, batch_size: int, normalized: bool = False) -> torch.Tensor:
    """``e0 = noise_hat(x0, step 0)``; PIAN's rescaled version when ``normalized``."""
    t0 = family_steps(family, [0]).repeat(x.shape[0])
    e0 = batched(lambda a, t: family.predict_noise(model, a, t), model, [x, t0], batch_size)
    if normalized:
        e0 = e0 * math.sqrt(2 / math.pi) / e0.abs().flatten(1).mean(1).reshape(-1, *[1] * (x.dim() - 1))
    return e0


def distances(model, family, x: torch.Tensor, paper_steps, powers, batch_size: int, normalized: bool) -> dict:
    """{(t, p): sum_pixels |noise_hat(x_t, t) - e0|^p per image}, batched over images and steps."""
    e0 = initial_noise(model, family, x, batch_size, normalized)
    steps = family_steps(family, paper_steps)
    (xs, ts), (es, _) = over_steps(x, steps), over_steps(e0, steps)

    def back(a, e, t):
        scale, std = family.scale_std(t, a)
        return family.predict_noise(model, scale * a + std * e, t) - e
    diff = batched(back, model, [xs, es, ts], batch_size).reshape(len(steps), x.shape[0], -1).double()
    return {(int(t), p): diff[i].abs().pow(p).sum(1).numpy() for i, t in enumerate(paper_steps) for p in powers}


def _scorer(normalized):
    def scorer(model, family, x, grid, context):
        d = distances(model, family, x, sorted({g["t"] for g in grid}), sorted({g["p"] for g in grid}),
                      context.batch_for(model, x), normalized)
        return np.stack([member_score_from_loss(d[(g["t"], g["p"])]) for g in grid], axis=1)
    return scorer


def _grid(settings):
    return [{"t": t, "p": p} for t in STEPS for p in POWERS]


register(Attack(name="pia", label="PIA", reference="Kong et al. 2024", scorer=_scorer(False), grid=_grid,
                queries=lambda setting: 2, default_in=("later_attacks", "own"), form=discrete_form("pia_ode")))
register(Attack(name="pian", label="PIAN", reference="Kong et al. 2024", scorer=_scorer(True), grid=_grid,
                queries=lambda setting: 2, default_in=("later_attacks", "own"), form=discrete_form("pian_ode")))
