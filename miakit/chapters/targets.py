"""Chapter 01: one target per family, same data, split and budget (``train.ensure_all``); the
chapter's contract entry (``CHAPTER``): its trainings and its draw from the dataset, the split."""
from __future__ import annotations

from miakit.chapters.contract import Chapter, Need, Training
from miakit.core.config import Settings


def trainings(settings: Settings) -> list[Training]:
    """The target of every family in ``settings.families``."""
    return [Training("01", f"target {family}", settings.for_family(family)) for family in settings.family_names()]


def images_needed(settings: Settings) -> list[Need]:
    """The split every chapter shares."""
    d = settings.data
    return [Need("01", f"the split: n_members={d.n_members} + n_nonmembers={d.n_nonmembers}",
                 d.n_members + d.n_nonmembers)]


CHAPTER = Chapter("01", "01_targets", trainings, images_needed)
