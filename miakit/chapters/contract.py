"""The chapter contract: what every chapter declares about itself, so that the budget, the
feasibility check, the book's build order and the claims page loop over the chapters instead of
keeping copies of their plans.

A chapter module declares one ``Chapter`` (chapters 02 and 03 share a module and declare two):
its number and notebook, ``trainings(settings)`` (every target it trains that no earlier chapter
trained), ``images_needed(settings)`` (every draw it makes from a dataset), ``verdicts(settings,
progress_bar)`` (the claims it decides, recomputed from the run store, for the claims page) and
the notebooks whose cached scores it reads (``after``: the book runs it after them) and the
chapters whose trained targets it loads besides its own (``loads``: the book starts its notebook
once their trainings and its own are done).
``miakit.chapters.book_chapters()`` lists them in book order.

A chapter's notebook makes one call, ``run(settings)``, which returns a ``ChapterResult``: the
displays are its methods, and one call glues what the prose quotes (``report.glue_chapter``:
``glue_values()`` and the outcomes of ``verdicts()``), so no cell digs into results.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

from miakit.core.config import Settings


@dataclass(frozen=True)
class Training:
    """One target a chapter trains (``train.ensure`` of ``settings``; a reference model when
    ``reference`` is set)."""

    chapter: str
    what: str
    settings: Settings  # what ``train.ensure`` trains
    reference: int | None = None  # the reference model's index (chapter 06), else None

    @property
    def iterations(self) -> int:
        return self.settings.target.iterations

    @property
    def batch(self) -> int:
        return self.settings.target.batch_size

    @property
    def private(self) -> bool:
        """DP-SGD with clipping (per-example gradient norms): dearer per image-step."""
        return self.settings.target.dp_sgd and math.isfinite(self.settings.target.dp_max_grad_norm)

    @property
    def image_steps(self) -> int:
        return self.iterations * self.batch


@dataclass(frozen=True)
class Need:
    """One draw a chapter makes from a dataset: ``images`` images, for ``what`` (which names the
    parameters and numbers behind it), from the dataset the knob ``source`` names."""

    chapter: str
    what: str
    images: int
    source: str = "dataset"  # "dataset" or "bench_dataset"


def _none(settings: Settings) -> list:
    return []


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book (see the module docstring)."""

    number: str  # "04"
    notebook: str  # the notebook's stem, "04_factors"
    trainings: Callable[[Settings], list[Training]] = _none
    images_needed: Callable[[Settings], list[Need]] = _none
    verdicts: Callable[..., list] | None = None  # (settings, progress_bar) -> list[claims.Verdict]
    after: tuple[str, ...] = ()  # notebooks whose cached scores it reads
    loads: tuple[str, ...] = ()  # the chapters (numbers) whose trained targets it loads besides its own


class ChapterResult:
    """What a chapter's ``run(settings)`` returns: its displays are methods; ``verdicts`` are the
    claims it decides and ``glue_values`` what its prose quotes (``report.glue_chapter``);
    ``number`` is its ``Chapter.number`` when it decides claims (the claims page reads the verdicts
    it kept: ``overview.remember``)."""

    number: ClassVar[str] = ""

    def verdicts(self) -> list:
        return []

    def claims_table(self):
        """The chapter's verdicts as the claims table shows them."""
        from miakit.evidence import claims

        return claims.table(self.verdicts())

    def glue_values(self) -> dict:
        return {}
