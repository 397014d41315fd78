"""SecMI_stat (Duan et al., ICML 2023, "Are diffusion models vulnerable to membership inference
attacks?").

The image is inverted deterministically (``Family.deterministic_step``: DDIM with eta = 0, or
the probability-flow Euler step in sigma for the variance-exploding families) from step 0 to
``t_sec`` in steps of ``k``, giving ``x~``; one deterministic denoising step to ``t_sec - k``
and one inversion step back to ``t_sec`` should return to ``x~``. Member score = -(t-error),
``-||psi(phi(x~, t_sec), t_sec - k) - x~||^2``. Their CIFAR-10 defaults: t_sec = 100, k = 10
(of 1000 steps). Queries per image: t_sec / k for the inversion plus 2; one inversion chain
serves every t_sec of a k."""
from __future__ import annotations

import numpy as np
import torch

from .base import Attack, batched, family_steps, member_score_from_loss, register

INTERVALS = (10,)
T_SEC = (20, 50, 100, 200, 300)  # of the paper's 1000; multiples of every interval


def step(model, family, x: torch.Tensor, t_from: int, t_to: int, batch_size: int) -> torch.Tensor:
    """One deterministic step of every image from paper step ``t_from`` to ``t_to``."""
    n = x.shape[0]
    a, b = family_steps(family, [t_from]).repeat(n), family_steps(family, [t_to]).repeat(n)
    return batched(lambda xx, ta, tb: family.deterministic_step(model, xx, ta, tb), model, [x, a, b], batch_size)


def invert(model, family, x0: torch.Tensor, k: int, stops, batch_size: int) -> dict[int, torch.Tensor]:
    """{t: x~_t}: the deterministic inversion of ``x0`` from step 0 in steps of ``k``, kept at
    each step of ``stops`` (multiples of ``k``)."""
    if any(t % k for t in stops):
        raise ValueError(f"every t_sec must be a multiple of the interval k = {k}: {sorted(stops)}")
    kept, x = {}, x0
    for t in range(0, max(stops), k):
        x = step(model, family, x, t, t + k, batch_size)
        if t + k in stops:
            kept[t + k] = x
    return kept


def t_errors(model, family, x0: torch.Tensor, k: int, stops, batch_size: int) -> dict[int, np.ndarray]:
    """{t_sec: ||psi(phi(x~)) - x~||^2 per image} for every t_sec in ``stops``."""
    inverted = invert(model, family, x0, k, stops, batch_size)
    out = {}
    for t, xt in inverted.items():
        back = step(model, family, step(model, family, xt, t, t - k, batch_size), t - k, t, batch_size)
        out[t] = (back - xt).double().flatten(1).pow(2).sum(1).numpy()
    return out


def _scorer(model, family, x, grid, context):
    errors = {}
    for k in sorted({g["k"] for g in grid}):
        for t, e in t_errors(model, family, x, k, sorted({g["t_sec"] for g in grid if g["k"] == k}),
                             context.batch_for(model, x)).items():
            errors[(t, k)] = e
    return np.stack([member_score_from_loss(errors[(g["t_sec"], g["k"])]) for g in grid], axis=1)


register(Attack(
    name="secmi", label="SecMI (stat)", reference="Duan et al. 2023", scorer=_scorer,
    grid=lambda settings: [{"t_sec": t, "k": k} for k in INTERVALS for t in T_SEC if t % k == 0],
    queries=lambda setting: setting["t_sec"] // setting["k"] + 2))
