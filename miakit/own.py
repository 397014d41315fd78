"""Attack your own model: the book's protocol on a diffusion model someone else trained.

    from diffusers import DDPMScheduler, UNet2DModel
    from miakit import own

    model = UNet2DModel.from_pretrained("path/to/model")
    family = own.family_from_scheduler(DDPMScheduler.from_pretrained("path/to/model"))
    members = own.load_images("path/to/members", model)
    nonmembers = own.load_images("path/to/nonmembers", model)
    result = own.attack(model, family, members, nonmembers)
    result.table()
    result.roc_figure()

The members and nonmembers are each cut into a validation part, on which every attack chooses
its setting (the diffusion step, for the loss attack), and a test part, on which it is reported
with 95% bootstrap intervals, by a seeded random draw (``data.given_split``). Every registered
attack that needs no reference models runs through the same registry as the book's chapters.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miakit import attacks
from miakit.core import config, data
from miakit.evidence import metrics
from miakit.book import plots
from miakit.diffusion import Family, ScheduledDDPM, from_scheduler
from miakit.chapters.loss_and_likelihood import LossAttackStudy


def family_from_scheduler(scheduler) -> ScheduledDDPM:
    """The family of a model trained with diffusers noise scheduler ``scheduler`` (its beta
    schedule, linear or cosine or any other, and its prediction type): ``diffusion.from_scheduler``."""
    return from_scheduler(scheduler)


def load_images(folder, model=None, resolution: int | None = None, channels: int | None = None) -> torch.Tensor:
    """Every readable image under ``folder``, centre-cropped, resized to the model's resolution and
    scaled to [-1, 1] as the book's datasets are (``data.load``). ``model`` (a diffusers
    ``UNet2DModel``) gives the resolution and channels unless they are passed; grayscale images
    are repeated to 3 channels for an RGB model, and a clear error names any other mismatch."""
    if model is not None:
        resolution = resolution or _as_int(model.config.sample_size)
        channels = channels or model.config.in_channels
    if not resolution:
        raise ValueError("pass the model or a resolution")
    images = data.load(f"folder:{Path(folder)}", resolution).images
    if channels and images.shape[1] != channels:
        if images.shape[1] == 1 and channels == 3:
            images = images.repeat(1, 3, 1, 1)
        else:
            raise ValueError(f"the images under {folder} have {images.shape[1]} channel(s); the model takes {channels}")
    return images


def _as_int(size) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@dataclass
class OwnResult:
    """Every attack's scores and metrics on the user's images; ``table`` and ``roc_figure`` show them."""

    studies: dict[str, LossAttackStudy]  # attack name -> its scores over its grid, chosen on validation
    grids: dict[str, list[dict]]
    split: data.Split

    def table(self):
        """Per attack: the setting chosen on the validation part, and on the test part the AUC and
        the TPR at 1% and 0.1% FPR with 95% bootstrap intervals, and the model evaluations per image."""
        import pandas as pd

        rows = []
        for name, study in self.studies.items():
            attack, j = attacks.get(name), study.best_index_val
            queries = attack.queries(self.grids[name][j])
            rows.append({"attack": attack.label, "chosen on validation": attack.describe(self.grids[name][j]),
                         **metrics.estimate_row(study.chosen(), {f: study.chosen(f) for f in metrics.LOW_FPRS},
                                                counts=False),
                         "queries / image": "adaptive" if queries is None else queries})
        return pd.DataFrame(rows).set_index("attack")

    def results(self) -> dict[str, metrics.AttackResult]:
        """Attack label -> test-part result at the setting chosen on the validation part."""
        return {attacks.get(n).label: s.test[s.best_index_val] for n, s in self.studies.items()}

    def roc_figure(self, title: str = "your model"):
        """Log-log ROC curves of every attack on the test part."""
        return plots.roc_grid({title: self.results()}, ncol=1)


def attack(model, family: Family, members: torch.Tensor, nonmembers: torch.Tensor, names=None,
           settings=None, val_fraction: float = 0.5, seed: int = 0, progress_bar: bool = True) -> OwnResult:
    """Run the attacks ``names`` (default: the registry's ``own`` defaults) on ``model`` with ``members`` and ``nonmembers`` (image tensors in
    [-1, 1], as ``load_images`` returns), at the grids of ``settings`` (a ``config.resolve``
    profile; ``cpu`` by default, whose grids are small enough for a CPU). Attacks that need
    reference models, or that are not defined for ``family``, are refused by name."""
    settings = settings or config.resolve("cpu")
    names = attacks.defaults("own") if names is None else list(names)
    if members.shape[1:] != nonmembers.shape[1:]:
        raise ValueError(f"members are {tuple(members.shape[1:])} images, nonmembers {tuple(nonmembers.shape[1:])}")
    for name in names:
        a = attacks.get(name)
        if a.needs_references:
            raise ValueError(f"the {a.label} attack needs reference models trained like yours; it is run in the "
                             "book's chapter 06, not here")
        reason = a.undefined_for(family)
        if reason:
            raise ValueError(f"the {a.label} attack is not defined for this model: {reason}")
    split = data.given_split(len(members), len(nonmembers), val_fraction, seed, dataset="own")
    images = torch.cat([members, nonmembers]).float()
    model = model.eval() if hasattr(model, "eval") else model
    studies, grids = {}, {}
    for name in names:
        grid = attacks.get(name).grid(settings)
        scores = {part: attacks.score(name, model, family, images[getattr(split, part)], grid,
                                      attacks.Context(ids=getattr(split, part), seed=settings.attack.attack_seed,
                                                      progress_bar=progress_bar))
                  for part in data.PARTS}
        studies[name], grids[name] = LossAttackStudy.from_scores(np.arange(len(grid)), scores), grid
    return OwnResult(studies, grids, split)
