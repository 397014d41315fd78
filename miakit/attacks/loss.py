"""The loss attack (Hu & Pang 2023): member score = -(the family's training loss at step t),
averaged over ``n_noise`` draws whose noise is fixed by (seed, image id)."""
from __future__ import annotations

import numpy as np
import torch

from miakit.core import seeding
from miakit.diffusion import Family, paper_steps
from miakit.diffusion.unet import autocast
from miakit.core.progress import progress
from miakit.attacks.base import DEFAULT_BATCH, Attack, device_of, member_score_from_loss, register, require_finite


def image_noise(seed: int, image_id: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise the loss attack uses for one image, fixed by (seed, image id) alone
    (``miakit.core.seeding``)."""
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
    device = device_of(model, x.device)
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


def _scorer(model, family, x, grid, context):
    steps = [g["t"] for g in grid]
    n_noise = grid[0]["n_noise"] if grid else 1
    if any(g["n_noise"] != n_noise for g in grid):
        raise ValueError("one loss-attack call takes one n_noise")
    return loss_scores(model, family, x, [family.from_paper_step(t) for t in steps], n_noise, context.seed,
                       context.batch_size, context.progress_bar, context.ids)


register(Attack(
    name="loss", label="loss", reference="Hu & Pang 2023 (this paper)", scorer=_scorer,
    grid=lambda settings: [{"t": int(t), "n_noise": settings.attack.n_noise}
                           for t in paper_steps(settings.attack.attack_steps)],
    queries=lambda setting: setting["n_noise"], paper=True, default_in=("later_attacks", "dp", "own"),
    form=lambda family: "the paper's"))
