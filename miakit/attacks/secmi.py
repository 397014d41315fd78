"""SecMI_stat (Duan et al., ICML 2023, "Are diffusion models vulnerable to membership inference
attacks?"), as their code defines it (jinhaoduan/SecMI ``mia_evals/secmia.py``:
``get_intermediate_results``, ``ddim_multistep``, ``ddim_singlestep``; the same round trip in
kong13661/PIA ``DDPM/components.py``, class ``SecMIAttacker``).

How we read it. ``x~`` is the deterministic inversion of the image from step 0 to ``t_sec - k``
in steps of ``k`` (``x_0 = x``, ``x_{t+k} = phi(x_t, t)``); then ONE deterministic step up to
``t_sec`` and ONE deterministic step down again:

    x~ = x_{t_sec - k},   x' = psi(phi(x~, t_sec - k), t_sec),
    t-error = ||x' - x~||^2 (sum over pixels), lower = member; member score = -t-error,

with ``phi`` the step from t to t + k and ``psi`` the step from t to t - k, both
``Family.deterministic_step`` (DDIM with eta = 0 for the variance-preserving families, the
probability-flow Euler step in sigma for the variance-exploding ones). The step up from ``x~`` is
the inversion chain's own next step, so one chain to ``max(t_sec)`` serves every ``t_sec`` of a
``k``: a whole grid costs ``max(t_sec) / k`` chain steps plus one step down per ``t_sec``; one
setting alone ``t_sec / k + 1`` model evaluations per image. Their defaults (CIFAR-10, 1000-step
DDPM): t_sec = 100, k = 10 (``target_steps = range(0, t_sec, k)[1:]``, so ``x~`` sits at step
90). ``miakit.attacks.continuous`` registers the same round trip with Euler steps of the
probability-flow ODE (``secmi_ode``); ``t_errors`` takes the step as an argument for it.
"""
from __future__ import annotations

import numpy as np
import torch

from miakit.attacks.base import Attack, batched, discrete_form, family_steps, member_score_from_loss, register

INTERVALS = (10,)
T_SEC = (20, 50, 100, 200, 300)  # of the paper's 1000; multiples of every interval


def deterministic(model, family, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """SecMI's step: DDIM (eta = 0) or its variance-exploding counterpart, from family step
    ``t`` to ``t_next`` (either direction)."""
    return family.deterministic_step(model, x, t, t_next)


def step(model, family, x: torch.Tensor, t_from: int, t_to: int, batch_size: int, move=deterministic) -> torch.Tensor:
    """``move`` every image from paper step ``t_from`` to ``t_to`` (one model evaluation each)."""
    n = x.shape[0]
    a, b = family_steps(family, [t_from]).repeat(n), family_steps(family, [t_to]).repeat(n)
    return batched(lambda xx, ta, tb: move(model, family, xx, ta, tb), model, [x, a, b], batch_size)


def invert(model, family, x0: torch.Tensor, k: int, keep, batch_size: int, move=deterministic) -> dict[int, torch.Tensor]:
    """{t: x_t}: the inversion chain of ``x0`` from step 0 in steps of ``k`` up to ``max(keep)``,
    kept at each step of ``keep`` (multiples of ``k``; 0 keeps ``x0`` itself)."""
    if any(t % k or t < 0 for t in keep):
        raise ValueError(f"every t_sec must be a multiple of the interval k = {k}: {sorted(keep)}")
    kept, x = ({0: x0} if 0 in keep else {}), x0
    for t in range(0, max(keep), k):
        x = step(model, family, x, t, t + k, batch_size, move)
        if t + k in keep:
            kept[t + k] = x
    return kept


def t_errors(model, family, x0: torch.Tensor, k: int, t_secs, batch_size: int, move=deterministic) -> dict[int, np.ndarray]:
    """{t_sec: ||psi(phi(x~)) - x~||^2 per image}, x~ = the chain at ``t_sec - k``, for every
    ``t_sec`` (positive multiples of ``k``)."""
    if any(t < k for t in t_secs):
        raise ValueError(f"every t_sec must be at least the interval k = {k}: {sorted(t_secs)}")
    chain = invert(model, family, x0, k, {*t_secs, *(t - k for t in t_secs)}, batch_size, move)
    out = {}
    for t in t_secs:
        back = step(model, family, chain[t], t, t - k, batch_size, move)
        out[t] = (back - chain[t - k]).double().flatten(1).pow(2).sum(1).numpy()
    return out


def scorer(move=deterministic):
    """The SecMI scorer whose steps are ``move``: member scores -t-error, one column per setting."""
    def score(model, family, x, grid, context):
        errors = {}
        for k in sorted({g["k"] for g in grid}):
            t_secs = sorted({g["t_sec"] for g in grid if g["k"] == k})
            for t, e in t_errors(model, family, x, k, t_secs, context.batch_for(model, x), move).items():
                errors[(t, k)] = e
        return np.stack([member_score_from_loss(errors[(g["t_sec"], g["k"])]) for g in grid], axis=1)
    return score


def grid(settings):
    return [{"t_sec": t, "k": k} for k in INTERVALS for t in T_SEC if t % k == 0]


def queries(setting):
    """t_sec / k steps up (the chain to t_sec - k, then the step up to t_sec) plus one down."""
    return setting["t_sec"] // setting["k"] + 1


register(Attack(name="secmi", label="SecMI (stat)", reference="Duan et al. 2023", scorer=scorer(),
                grid=grid, queries=queries, default_in=("later_attacks", "own"), form=discrete_form("secmi_ode")))
