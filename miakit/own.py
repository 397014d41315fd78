"""Attack your own model: the book's protocol on a diffusion model someone else trained.

    from diffusers import DDPMScheduler, UNet2DModel
    from miakit import own

    model = UNet2DModel.from_pretrained("path/to/model")
    family = own.family_from_scheduler(DDPMScheduler.from_pretrained("path/to/model"))
    members = own.load_images("path/to/members", model)
    nonmembers = own.load_images("path/to/nonmembers", model)
    result = own.attack(model, family, members, nonmembers)
    print(result)               # the table (result.table() is the DataFrame)
    result.roc_figure()

The members and nonmembers are each cut into a validation part, on which every attack chooses
its setting (the diffusion step, for the loss attack), and a test part, on which it is reported
with 95% bootstrap intervals, by a seeded random draw (``data.given_split``). Every registered
attack that needs no reference models runs through the same registry as the book's chapters.
"""
from __future__ import annotations

import math
import warnings
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


def load_images(folder, model=None, resolution: int | None = None, channels: int | None = None,
                upsample: bool = False) -> torch.Tensor:
    """Every readable image under ``folder``, centre-cropped, resized to the model's resolution and
    scaled to [-1, 1] as the book's datasets are (``data.load``). ``model`` (a diffusers
    ``UNet2DModel``) gives the resolution and channels unless they are passed; grayscale images
    are repeated to 3 channels for an RGB model, and a clear error names any other mismatch.
    Images smaller than the resolution are refused unless ``upsample``: an attack on images
    blown up to the model's size measures how the model treats blurred images, not its members."""
    if model is not None:
        resolution = resolution or _as_int(model.config.sample_size)
        channels = channels or model.config.in_channels
    if not resolution:
        raise ValueError("pass the model or a resolution")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"own.load_images: {folder} is not a folder (give the path of a folder of image files: "
                         f"{', '.join(sorted(data.IMAGE_SUFFIXES))}; subfolders are read too)")
    if not upsample:
        small = _smaller_than(folder, resolution)
        if small:
            raise ValueError(f"{len(small)} image(s) under {folder} are smaller than the model's {resolution}x{resolution} "
                             f"(e.g. {small[0]}): they would be upsampled, and the attacks would measure how the model "
                             "treats blurred images rather than its training images. Give images at the model's "
                             "resolution or larger, or pass upsample=True if the model was trained on upsampled images")
    try:
        images = data.load(f"folder:{folder}", resolution).images
    except data.DatasetError as err:
        raise ValueError(f"own.load_images({str(folder)!r}): {err}".split("; pass dataset=")[0]) from None
    if channels and images.shape[1] != channels:
        if images.shape[1] == 1 and channels == 3:
            images = images.repeat(1, 3, 1, 1)
        else:
            raise ValueError(f"the images under {folder} have {images.shape[1]} channel(s); the model takes {channels}")
    return images


def _smaller_than(folder: Path, resolution: int) -> list[str]:
    """The image files under ``folder`` whose shorter side is below ``resolution`` (read from their
    headers; unreadable files are left to ``data.load``'s error)."""
    from PIL import Image

    small = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in data.IMAGE_SUFFIXES:
            try:
                with Image.open(path) as img:
                    if min(img.size) < resolution:
                        small.append(f"{path.relative_to(folder)}: {img.size[0]}x{img.size[1]}")
            except OSError:
                continue
    return small


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
        the TPR at 1% and 0.1% FPR with 95% bootstrap intervals, and the model evaluations per image.
        A TPR the test part is too small to measure is left out (``attrs["unmeasurable"]`` names it)."""
        import pandas as pd

        rows = []
        for name, study in self.studies.items():
            attack, j = attacks.get(name), study.best_index_val
            queries = attack.queries(self.grids[name][j])
            rows.append({"attack": attack.label, "chosen on validation": attack.describe(self.grids[name][j]),
                         **metrics.estimate_row(study.chosen(), {f: study.chosen(f) for f in metrics.LOW_FPRS},
                                                counts=False),
                         "queries / image": "adaptive" if queries is None else queries})
        return metrics.measurable(pd.DataFrame(rows).set_index("attack"))

    def __str__(self) -> str:
        return self.table().to_string()

    def _repr_html_(self) -> str:
        return self.table().to_html()

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
    for name in names:
        a = attacks.get(name)
        if a.needs_references:
            raise ValueError(f"the {a.label} attack needs reference models trained like yours; it is run in the "
                             "book's chapter 06, not here")
        reason = a.undefined_for(family)
        if reason:
            raise ValueError(f"the {a.label} attack is not defined for this model: {reason}")
    check_images(model, members, nonmembers)
    split = check_counts(len(members), len(nonmembers), val_fraction, seed)
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


MIN_PER_PART = 5  # members and nonmembers each part needs: below it an AUC's interval spans most of [0, 1]


def check_images(model, members, nonmembers) -> None:
    """Refuse, before any model evaluation, images the model cannot have been trained on as given:
    not float tensors of shape [N, C, H, W], values outside [-1, 1] (images in [0, 1] or uint8 are
    the commonest slip: ``load_images`` scales them), a size or channel count other than the
    model's (a diffusers model's ``sample_size`` and ``in_channels``), or a size its UNet cannot
    halve as often as it downsamples."""
    for name, x in (("members", members), ("nonmembers", nonmembers)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"{name} must be a tensor of images [N, C, H, W] (own.load_images returns one), "
                             f"got {type(x).__name__}{'' if not hasattr(x, 'shape') else ' of shape ' + str(tuple(x.shape))}")
    if members.shape[1:] != nonmembers.shape[1:]:
        raise ValueError(f"members are {tuple(members.shape[1:])} images, nonmembers {tuple(nonmembers.shape[1:])}")
    for name, x in (("members", members), ("nonmembers", nonmembers)):
        if not x.is_floating_point():
            raise ValueError(f"{name} are {x.dtype} images; the attacks take floats in [-1, 1] as the model was "
                             "trained on (own.load_images scales them; for uint8 use x.float() / 127.5 - 1)")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contain NaN or infinite pixels")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - 1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{name} have pixel values in [{lo:.3g}, {hi:.3g}]; the attacks take images scaled to "
                             "[-1, 1] as the model was trained on (own.load_images scales them)")
        if lo >= 0 and x.numel() > 1:
            raise ValueError(f"{name} have pixel values in [{lo:.3g}, {hi:.3g}], none negative: images in [0, 1] "
                             "must be scaled to [-1, 1] (x * 2 - 1) as the model was trained on")
    c, h, w = members.shape[1:]
    cfg = getattr(model, "config", None)
    if cfg is None:
        return
    size = getattr(cfg, "sample_size", None)
    if size is not None:
        want = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if (h, w) != tuple(want):
            raise ValueError(f"the images are {h}x{w}, the model takes {want[0]}x{want[1]} (its sample_size): "
                             "load them with own.load_images(folder, model), which resizes larger images to its size")
    if getattr(cfg, "in_channels", c) != c:
        raise ValueError(f"the images have {c} channel(s), the model takes {cfg.in_channels}")
    downs = len(getattr(cfg, "down_block_types", ())) - 1
    if downs > 0 and (h % 2 ** downs or w % 2 ** downs):
        raise ValueError(f"the model's UNet halves its input {downs} time(s), so its images' sides must be multiples "
                         f"of {2 ** downs}; {h}x{w} is not: this model cannot run on images of its sample_size")


def check_counts(n_members: int, n_nonmembers: int, val_fraction: float, seed: int) -> data.Split:
    """The seeded validation/test split of the images, refused when a part has fewer than
    ``MIN_PER_PART`` members or nonmembers; a warning for each TPR the test part is too small to
    measure (a TPR at FPR f needs at least 1/f test nonmembers), saying how many images would do."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    split = data.given_split(n_members, n_nonmembers, val_fraction, seed, dataset="own")
    for name, n, parts in (("members", n_members, (split.members_val, split.members_test)),
                           ("nonmembers", n_nonmembers, (split.nonmembers_val, split.nonmembers_test))):
        if min(len(p) for p in parts) < MIN_PER_PART:
            least = math.ceil(MIN_PER_PART / min(val_fraction, 1 - val_fraction))
            raise ValueError(f"{n} {name} give {len(parts[0])} for validation and {len(parts[1])} for the test part; "
                             f"each part needs at least {MIN_PER_PART} (below that an AUC's 95% interval spans most "
                             f"of [0, 1]): give at least {least} {name}")
    n_test = len(split.nonmembers_test)
    for fpr in metrics.LOW_FPRS:
        if n_test * fpr < 1:
            warnings.warn(f"TPR at {fpr * 100:g}% FPR needs at least {math.ceil(1 / fpr)} test nonmembers; "
                          f"{n_nonmembers} nonmembers give {n_test} (val_fraction {val_fraction:g}): give at least "
                          f"{math.ceil(math.ceil(1 / fpr) / (1 - val_fraction))} nonmembers to measure it; "
                          f"the table leaves it out", stacklevel=3)
    return split
