"""Early stopping as an honest trainer does it: on a validation loss of held-out images, without
membership labels.

The trainer holds out images that no attack scores (``Split.subset("unused", k)``: neither
members nor nonmembers), evaluates the diffusion training loss of its EMA weights on them at
every kept snapshot (``snapshot_every``) and stops by the usual patience rule
(``stopping_point``): after ``patience`` evaluations in a row that do not improve on the best
so far, it stops and releases the best weights seen (Keras' ``EarlyStopping`` with
``restore_best_weights``). What it releases depends only on the evaluations up to its stop, so
choosing among the snapshots of one full-length training gives the model a trainer that stopped
there would have released, without a second training.

The validation loss is the family's training loss at ``n_draws`` (step, noise) pairs per image,
each fixed by (seed, image id, draw) (``miakit.core.seeding``), so every snapshot is measured on
the same draws and a difference between snapshots is the model's, not the draws'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from miakit.core import seeding
from miakit.diffusion.unet import autocast, device_of

VALIDATION_STREAM = 3  # seeding stream of the validation draws (the attacks use 0-2)


@dataclass(frozen=True)
class Stop:
    """Where the patience rule stops: ``released`` is the iteration whose weights it releases
    (the best evaluation up to the stop), ``stopped_at`` the evaluation at which it stopped
    (None: it never ran out of patience and the training ran to its end)."""

    released: int
    stopped_at: int | None
    iterations: tuple[int, ...]
    losses: tuple[float, ...]


def stopping_point(iterations, losses, patience: int) -> Stop:
    """The patience rule over evaluations in training order: an evaluation improves when its
    loss is strictly below the best so far; the ``patience``-th evaluation in a row that does not
    improve stops the training; the best evaluation so far is released (at the end of the
    training when it never stops)."""
    iterations, losses = tuple(int(i) for i in iterations), tuple(float(v) for v in losses)
    if patience < 1:
        raise ValueError(f"patience must be at least 1, not {patience}")
    if not iterations or len(iterations) != len(losses):
        raise ValueError("one loss per evaluated iteration, and at least one")
    if list(iterations) != sorted(set(iterations)):
        raise ValueError(f"evaluations must come in training order, once each: {iterations}")
    if not np.all(np.isfinite(losses)):
        raise ValueError(f"a validation loss is not finite: {losses}")
    best, since = 0, 0
    for k in range(1, len(losses)):
        if losses[k] < losses[best]:
            best, since = k, 0
        else:
            since += 1
            if since == patience:
                return Stop(iterations[best], iterations[k], iterations, losses)
    return Stop(iterations[best], None, iterations, losses)


@torch.inference_mode()
def validation_loss(model, family, images: torch.Tensor, ids, seed: int = 0, n_draws: int = 4,
                    batch_size: int = 256) -> float:
    """The mean training loss of ``model`` on ``images`` over ``n_draws`` (step, noise) pairs per
    image, each pair fixed by (``seed``, the image's id, the draw)."""
    ids = seeding.image_ids(images, ids)
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, not {n_draws}")
    steps, noises = [], []
    for i in ids:
        gen = seeding.generator(seed, int(i), VALIDATION_STREAM)
        steps.append(family.sample_train_t(n_draws, gen))
        noises.append(torch.randn((n_draws, *images.shape[1:]), generator=gen))
    x0 = images.repeat_interleave(n_draws, dim=0)
    t, noise = torch.cat(steps), torch.cat(noises)
    device = device_of(model, images.device)
    total = 0.0
    for b in range(0, x0.shape[0], batch_size):
        with autocast(device):
            loss = family.loss(model, x0[b:b + batch_size].to(device), t[b:b + batch_size].to(device),
                               noise[b:b + batch_size].to(device))
        total += float(loss.float().sum())
    return total / x0.shape[0]


def early_stop(run, patience: int, n_images: int, n_draws: int = 4, seed: int = 0) -> Stop:
    """The model an early-stopping trainer of ``run`` releases: the validation loss of every kept
    snapshot (and the final weights) on ``n_images`` held-out images (``Split.subset("unused")``),
    then ``stopping_point``. Cached in the run folder."""
    held_out = run.split.subset("unused", n_images)
    if len(held_out) == 0:
        raise ValueError(f"{run.dir.name} has no held-out images (every image is a member or a nonmember): "
                         "early stopping needs some; lower n_members or n_nonmembers")
    iterations = run.snapshot_iterations()
    if len(iterations) < 2:
        raise ValueError(f"{run.dir.name} kept no snapshot before its final weights: early stopping needs "
                         "snapshot_every > 0 while training")

    def compute() -> dict[str, np.ndarray]:
        images = run.images(held_out)
        return {"iterations": np.asarray(iterations, dtype=np.int64),
                "losses": np.asarray([validation_loss(run.model_at(i), run.family, images, held_out, seed, n_draws)
                                      for i in iterations], dtype=np.float64)}

    payload = {"iterations": iterations, "n_draws": n_draws, "seed": seed, "format": seeding.FORMAT}
    stored = run.cached("validation-loss", payload, {"held_out": held_out}, compute)
    return stopping_point(stored["iterations"], stored["losses"], patience)
