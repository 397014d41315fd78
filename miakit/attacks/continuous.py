"""The continuous-time PIA, PIAN and SecMI of Kong et al. (ICLR 2024, "An efficient membership
inference attack for the diffusion model by proximal initialization"), as their Grad-TTS code
defines them (kong13661/PIA ``gradtts/attack/grad_tts/model/diffusion.py``: methods ``PIA``,
``PIAN``, ``SecMI`` with ``ddim_reverse_groundtruth_correct(_abs)``,
``ddim_denoise_groundtruth_correct(_abs)``, ``ddim_reverse``, ``ddim_denoise``; defaults in
``gradtts/attack/attack.py``: T = 1000, interval = 10, attack_num = 99, so the step is
h = 10 / 1000 and the times are t_i = i h). Registered beside the discrete-formula attacks
(``secmi``, ``pia``, ``pian``, which run on every family) as ``secmi_ode``, ``pia_ode`` and
``pian_ode``; defined for the SDE families only.

How we read it. Their model is a VP SDE (Grad-TTS, prior mean mu) whose network returns the
score s(x, t); its probability-flow ODE is dx/dt = f_ode(x, t) = 1/2 beta(t) (mu - x - s(x, t)),
g(t)^2 = beta(t). For any SDE family we write

    D(x, t) = x + 2 f_ode(x, t) / g(t)^2        (VP: mu - s with mu = 0; VE, f = 0: x - s),

with f_ode = ``family.ode_drift`` and g^2 = ``family.sde(t)[1]``. For the VP SDE this is exactly
their ``mu - estimator(x_t, t)`` (images have mu = 0); for the VE SDE it is our reading of the
same definition. Times: paper steps 0..999 mapped by ``family.from_paper_step`` (the book's one
mapping), so h is 10 paper steps.

- **PIA** (``pia_ode``): the proximal initial noise is the noise prediction on the CLEAN image at
  the small positive time t0 = paper step 100 (their hard-coded ``i = 10`` intervals):
  ``e0 = -s(x0, t0) std(t0)`` (``family.predict_noise``). For each t: ``x_t = mean(t) x0 +
  std(t) e0`` and the distance ``sum |x_t - D(x_t, t)|^p = sum |2 f_ode(x_t, t) / g(t)^2|^p``
  (p = 4 in their code), lower = member.
- **PIAN** (``pian_ode``): ``e0`` as PIA's, then ``e0 / (mean|e0| sqrt(2/pi) + 1e-12)`` per image,
  which rescales to mean absolute value sqrt(pi/2) (not sqrt(2/pi) as their DDPM PIAN); and
  since their code deletes the last x_t and the first denoised point, x at t is compared with D
  at the NEXT time: ``sum |x_t - D(x_{t+h}, t+h)|^p``. Both quirks are theirs, kept.
- **SecMI** (``secmi_ode``): Euler steps of the probability-flow ODE between the grid times,
  up ``x_{i+1} = x_i + (t_{i+1} - t_i) f_ode(x_i, t_i)`` and down ``x'_i = x_{i+1} - (t_{i+1} -
  t_i) f_ode(x_{i+1}, t_{i+1})``; t-error ``||x'_i - x_i||^2`` with x_i at ``t_sec - k``, lower =
  member (the up-then-down round trip of ``miakit.attacks.secmi``). They start at t = 0; our VP
  score divides by std(0) = 0 there, so the chain starts at the family's ODE start
  ``family.eps`` (paper step 0).

Queries per image: PIA and PIAN one for e0 plus one per step; SecMI t_sec / k + 1 per setting
(one chain serves every t_sec).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from miakit.attacks import secmi
from miakit.attacks.base import Attack, batched, family_steps, member_score_from_loss, over_steps, register
from miakit.attacks.pia import POWERS, STEPS

INTERVAL = 10  # h, in paper steps (their interval / T = 10 / 1000)
FORM = "the authors' continuous-time form (their Grad-TTS code)"
T0 = 100  # the proximal initial noise's time, in paper steps (their i = 10 intervals)


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *[1] * (like.dim() - 1)).to(like.dtype)


def undefined(discrete_name: str):
    """The ``undefined_for`` rule: the continuous-time form needs the SDE of a family."""
    def reason(family):
        if family.discrete or not hasattr(family, "sde"):
            return f"the continuous-time form needs an SDE family; its discrete form is {discrete_name}"
        return None
    return reason


def denoised(model, family, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``D(x, t) = x + 2 f_ode(x, t) / g(t)^2`` (VP: -score; VE: x - score)."""
    g2 = family.sde(t.to(x.device))[1]
    return x + 2 * family.ode_drift(model, x, t) / _column(g2, x)


def proximal_noise(model, family, x: torch.Tensor, batch_size: int, normalized: bool = False) -> torch.Tensor:
    """``e0 = -s(x0, t0) std(t0)`` at paper step ``T0``; PIAN's ``e0 / (mean|e0| sqrt(2/pi) + 1e-12)``
    when ``normalized``."""
    t0 = family_steps(family, [T0]).repeat(x.shape[0])
    e0 = batched(lambda a, t: family.predict_noise(model, a, t), model, [x, t0], batch_size)
    if normalized:
        e0 = e0 / (_column(e0.abs().flatten(1).mean(1), e0) * math.sqrt(2 / math.pi) + 1e-12)
    return e0


def distances(model, family, x: torch.Tensor, paper_steps, powers, batch_size: int, normalized: bool) -> dict:
    """{(t, p): sum_pixels |x_t - D(x_{t'}, t')|^p per image}, t' = t (PIA) or t + h (PIAN),
    ``x_t = mean(t) x0 + std(t) e0``; one query per image and step, batched over both."""
    e0 = proximal_noise(model, family, x, batch_size, normalized)
    lag = INTERVAL if normalized else 0
    here, there = family_steps(family, paper_steps), family_steps(family, [t + lag for t in paper_steps])
    (xs, ts), (es, _), (_, ts2) = over_steps(x, here), over_steps(e0, here), over_steps(x, there)

    def gap(a, e, t, t2):
        (m, s), (m2, s2) = family.scale_std(t, a), family.scale_std(t2, a)
        return m * a + s * e - denoised(model, family, m2 * a + s2 * e, t2)
    diff = batched(gap, model, [xs, es, ts, ts2], batch_size).reshape(len(here), x.shape[0], -1).double()
    return {(int(t), p): diff[i].abs().pow(p).sum(1).numpy() for i, t in enumerate(paper_steps) for p in powers}


def _pia_scorer(normalized):
    def scorer(model, family, x, grid, context):
        d = distances(model, family, x, sorted({g["t"] for g in grid}), sorted({g["p"] for g in grid}),
                      context.batch_for(model, x), normalized)
        return np.stack([member_score_from_loss(d[(g["t"], g["p"])]) for g in grid], axis=1)
    return scorer


def euler(model, family, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from time ``t`` to ``t_next`` (either way)."""
    return x + _column(t_next - t, x) * family.ode_drift(model, x, t)


def _pia_grid(settings):
    return [{"t": t, "p": p} for t in STEPS for p in POWERS]


for name, label, normalized in (("pia_ode", "PIA (PF-ODE)", False), ("pian_ode", "PIAN (PF-ODE)", True)):
    register(Attack(name=name, label=label, reference="Kong et al. 2024", scorer=_pia_scorer(normalized),
                    grid=_pia_grid, queries=lambda setting: 2, undefined_for=undefined(name.removesuffix("_ode")),
                    form=lambda family: FORM))
register(Attack(name="secmi_ode", label="SecMI (PF-ODE)", reference="Duan et al. 2023; Kong et al. 2024",
                scorer=secmi.scorer(euler), grid=secmi.grid, queries=secmi.queries, undefined_for=undefined("secmi"),
                form=lambda family: FORM))
