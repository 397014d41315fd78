"""Chapter 01: one target per family, same data, split and budget (``train.ensure_all``); the
chapter's contract entry (``CHAPTER``): its trainings and its draw from the dataset, the split."""
from __future__ import annotations

from dataclasses import dataclass

from miakit.chapters.contract import Chapter, ChapterResult, Need, Training
from miakit.core.config import Settings
from miakit.training import train


def trainings(settings: Settings) -> list[Training]:
    """The target of every family in ``settings.families``."""
    return [Training("01", f"target {family}", settings.for_family(family)) for family in settings.family_names()]


def images_needed(settings: Settings) -> list[Need]:
    """The split every chapter shares."""
    d = settings.data
    return [Need("01", f"the split: n_members={d.n_members} + n_nonmembers={d.n_nonmembers}",
                 d.n_members + d.n_nonmembers)]


@dataclass
class Targets(ChapterResult):
    """Chapter 01: the trained target of every family."""

    settings: Settings
    runs: dict[str, train.Run]

    def table(self):
        """Per family: the run, its training and its final loss (``report.targets_table``)."""
        from miakit.book import report

        return report.targets_table(self.runs)

    def curves_figure(self):
        from miakit.book import plots

        return plots.training_curves(self.runs)

    def samples_figure(self):
        """Member images beside each family's samples (``sampling.n_samples``, ``sample_steps``)."""
        from miakit.book import plots, report

        n, steps = self.settings.sampling.n_samples, self.settings.sampling.sample_steps
        return plots.samples_by_family(report.member_images(self.runs, n), train.samples(self.runs, n, steps))

    def glue_values(self) -> dict:
        from miakit.book import report

        first = next(iter(self.runs.values()))
        return {"profile": self.settings.profile, "train_device": first.history["device"],
                "n_members": len(first.split.members), "n_nonmembers": len(first.split.nonmembers),
                "n_families": len(self.runs), "train_seconds": round(report.total_train_seconds(self.runs))}


def run(settings: Settings, progress_bar: bool = True) -> Targets:
    """Chapter 01: every family's target, trained or loaded."""
    return Targets(settings, train.ensure_all(settings, progress_bar))


CHAPTER = Chapter("01", "01_targets", trainings, images_needed)
