"""Per-image random draws fixed by (seed, image id, stream), written once for every attack.

An attack that draws noise (the loss attack's noise, the likelihood attack's Hutchinson probes
and dequantisation) draws it per image from a generator seeded by the attack seed, the image's
id and a stream number, so a score depends neither on the batch an image is scored in nor on
which other images are scored with it. The id must identify the image itself (its dataset
index): with positions, the first member and the first nonmember would share their noise, and
members and nonmembers would draw from overlapping, unequal sets of noise blocks.
"""
from __future__ import annotations

import numpy as np
import torch

LOSS_NOISE, PROBES, DEQUANTIZE = 0, 1, 2  # streams
FORMAT = 2  # version of how draws are derived (2: by dataset index); part of every attack cache key


def image_ids(x: torch.Tensor, ids=None) -> np.ndarray:
    """The ids that fix each image's draws: ``ids`` (one per image, distinct), or the images'
    positions when not given (fine for one set scored alone, wrong for sets compared)."""
    if ids is None:
        return np.arange(x.shape[0])
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if ids.shape[0] != x.shape[0]:
        raise ValueError(f"{ids.shape[0]} image ids for {x.shape[0]} images")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("image ids must be distinct (two images with one id would share their noise)")
    return ids


def generator(seed: int, image_id: int, stream: int) -> torch.Generator:
    """A CPU generator for one image's draws of one kind."""
    state = np.random.SeedSequence([seed, image_id, stream]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> 1))
