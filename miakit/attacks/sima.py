"""SimA (Rao et al. 2025, "Score-based membership inference on diffusion models"): the model's
noise prediction on the CLEAN image at step t, one query per image and step; member score =
-||noise_hat(x0, t)||_p^p (members sit nearer the data manifold, where the predicted noise is
small). Their code uses p = 4; t is chosen on validation data here, not on the evaluation data."""
from __future__ import annotations

import numpy as np
import torch

from miakit.attacks.base import Attack, batched, family_steps, member_score_from_loss, over_steps, register

STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200)  # of the paper's 1000
POWERS = (2, 4)


def noise_norms(model, family, x: torch.Tensor, paper_steps, powers, batch_size: int) -> dict:
    """{(t, p): sum_pixels |noise_hat(x0, t)|^p per image} for every step and power; one query
    per image and step, batched over images and steps."""
    steps = family_steps(family, paper_steps)
    eps = batched(lambda a, t: family.predict_noise(model, a, t), model, list(over_steps(x, steps)), batch_size)
    eps = eps.reshape(len(steps), x.shape[0], -1).double()
    return {(int(t), p): eps[i].abs().pow(p).sum(1).numpy() for i, t in enumerate(paper_steps) for p in powers}


def _scorer(model, family, x, grid, context):
    steps = sorted({g["t"] for g in grid})
    norms = noise_norms(model, family, x, steps, sorted({g["p"] for g in grid}), context.batch_for(model, x))
    return np.stack([member_score_from_loss(norms[(g["t"], g["p"])]) for g in grid], axis=1)


register(Attack(
    name="sima", label="SimA", reference="Rao et al. 2025", scorer=_scorer,
    grid=lambda settings: [{"t": t, "p": p} for t in STEPS for p in POWERS],
    queries=lambda setting: 1, default_in=("later_attacks", "dp", "own")))
