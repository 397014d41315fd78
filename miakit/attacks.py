"""White-box membership inference attacks: model signals -> member scores.

Convention, stated once for the whole package: **members are the positive class and every score
is oriented so that higher means "more likely a member"**. The loss attack's raw signal (the
denoising loss, lower for members) is negated here and nowhere else.
"""
from __future__ import annotations

import numpy as np
import torch

from .diffusion import Family
from .likelihood import LikelihoodResult, likelihood  # noqa: F401  (log p: higher = member already)
from . import seeding
from .models import autocast
from .progress import progress

# evaluations per forward pass when not given: the fastest size measured for the small UNet on a
# 2-core CPU (benchmarks/loss_attack.py), and a size that keeps a GPU busy
DEFAULT_BATCH = {"cpu": 128, "cuda": 1024}


class NonFiniteScore(ValueError):
    """An attack produced NaN or inf for some images (named by their ids)."""


def require_finite(values: np.ndarray, ids, attack: str) -> np.ndarray:
    """``values`` (one row per image) unchanged, or an error naming the images whose row is not
    finite, by their ids (dataset indices), so one bad image is found rather than a whole
    evaluation failing later."""
    rows = np.asarray(values).reshape(len(values), -1)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        named = [int(np.asarray(ids)[i]) for i in bad[:10]]
        raise NonFiniteScore(f"the {attack} is NaN or inf for {len(bad)} image(s), dataset indices {named}"
                             f"{' ...' if len(bad) > 10 else ''}: check those images and the model")
    return values


def member_score_from_loss(loss: np.ndarray | torch.Tensor) -> np.ndarray:
    """Orient a loss (lower = member) as a member score (higher = member)."""
    return -np.asarray(loss, dtype=np.float64)


def _device_of(model, fallback: torch.device) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return fallback


def image_noise(seed: int, image_id: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise the loss attack uses for one image, fixed by (seed, image id) alone
    (``miakit.seeding``)."""
    return torch.randn(shape, generator=seeding.generator(seed, image_id, seeding.LOSS_NOISE))


@torch.inference_mode()
def losses(model, family: Family, x: torch.Tensor, steps, n_noise: int = 1, seed: int = 0,
           batch_size: int | None = None, progress_bar: bool = True, ids=None) -> np.ndarray:
    """The family's training loss per image, step and noise draw: array [n_images, n_steps, n_noise].

    ``batch_size`` (evaluations per forward pass) defaults to ``DEFAULT_BATCH`` of the model's
    device; ``ids`` (one per image, e.g. dataset indices) fix each image's noise (``image_ids``).
    """
    ids = seeding.image_ids(x, ids)
    steps_t = torch.as_tensor(np.asarray(steps))
    n_images, n_steps = x.shape[0], steps_t.shape[0]
    if n_images == 0 or n_steps == 0:
        raise ValueError("loss attack needs at least one image and one step")
    per_image = n_steps * n_noise
    device = _device_of(model, x.device)
    batch_size = batch_size or DEFAULT_BATCH.get(device.type, DEFAULT_BATCH["cuda"])
    images_per_block = max(1, batch_size // per_image)
    out = np.empty((n_images, n_steps, n_noise), dtype=np.float64)
    bar = progress(total=n_images * per_image, desc="loss attack", unit="eval", enabled=progress_bar)
    for start in range(0, n_images, images_per_block):
        stop = min(n_images, start + images_per_block)
        noise = torch.stack([image_noise(seed, int(ids[i]), (n_steps, n_noise, *x.shape[1:])) for i in range(start, stop)])
        noise = noise.flatten(0, 2)  # [(image, step, draw), C, H, W]
        x0 = x[start:stop].repeat_interleave(per_image, dim=0)
        t = steps_t.repeat_interleave(n_noise).repeat(stop - start)
        values = []
        for b in range(0, x0.shape[0], batch_size):
            sl = slice(b, b + batch_size)
            with autocast(device):
                values.append(family.loss(model, x0[sl].to(device), t[sl].to(device), noise[sl].to(device)).float().cpu())
            bar.update(values[-1].shape[0])
        out[start:stop] = torch.cat(values).reshape(stop - start, n_steps, n_noise).double().numpy()
    bar.close()
    return require_finite(out, ids, "loss attack")


def loss_scores(model, family: Family, x: torch.Tensor, steps, n_noise: int = 1, seed: int = 0,
                batch_size: int | None = None, progress_bar: bool = True, ids=None) -> np.ndarray:
    """Loss attack (Hu & Pang 2023): member score = -(training loss at step t), averaged over
    ``n_noise`` draws. Returns [n_images, n_steps]; higher = more likely a member. ``ids`` (one
    per image, e.g. dataset indices) fix each image's noise."""
    raw = losses(model, family, x, steps, n_noise, seed, batch_size, progress_bar, ids)
    return member_score_from_loss(raw.mean(axis=2))
