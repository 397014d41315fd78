"""Every claim of the book in one table: the verdicts of chapters 02-07, recomputed from the run
store (every target and score there is cached, so this trains and attacks nothing new when the
chapters ran before it).
"""
from __future__ import annotations

from dataclasses import dataclass

from miakit.chapters import later_attacks
from miakit.chapters.contract import ChapterResult
from miakit.evidence import claims
from miakit.training import train
from miakit.core.config import Settings


@dataclass
class Overview(ChapterResult):
    """The book's results at a glance: every verdict, and every attack on every family at its
    validation-chosen setting (chapter 06's study, the paper's loss and likelihood attacks
    beside the later ones), for the overview figure."""

    settings: Settings
    decided: list[claims.Verdict]  # every chapter's verdicts, in book order
    attacks: later_attacks.LaterAttacks

    def verdicts(self) -> list[claims.Verdict]:
        return self.decided

    def glue_values(self) -> dict:
        """The brief claims table, the rules, the margins, what the profile can show, how many
        verdicts came out each way (``n_<outcome>``) and the build's manifest."""
        from miakit.book import manifest

        return {"claims_table": claims.table(self.decided, brief=True), "rules": claims.rules_text(),
                "chance_delta": claims.DELTA, "narrow_margin": min(claims.MARGINS),
                "profile_note": profile_note(self.settings),
                **{f"n_{k}": v for k, v in counts(self.decided).items()}, "manifest": manifest.table(self.settings)}

    def roc_figure(self):
        """Log-log ROC curves on the test part, one panel per family, every attack at its
        validation-chosen setting (chapter 06's figure)."""
        from miakit.book import plots

        return plots.roc_grid(self.attacks.roc_results())


def overview(settings: Settings, progress_bar: bool = True) -> Overview:
    """Every chapter's verdicts (``contract.Chapter.verdicts``, in book order: the split check,
    C1, C2-C4, C5 and (ours) L1), recomputed from the run store, and chapter 06's attacks behind
    the overview figure."""
    from miakit.chapters import book_chapters

    out = [v for chapter in book_chapters() if chapter.verdicts for v in chapter.verdicts(settings, progress_bar)]
    later = later_attacks.later_attacks(train.ensure_all(settings, progress_bar), progress_bar=progress_bar)
    return Overview(settings, out, later)


def counts(verdicts: list[claims.Verdict]) -> dict[str, int]:
    """How many verdicts came out each way (for the book's prose)."""
    return {str(o).lower(): sum(v.outcome is o for v in verdicts) for o in claims.Outcome}


PROFILE_NOTES = {
    "smoke": "profile smoke: tiny models trained for seconds on a few images; its numbers test the code, not the "
             "paper, and its verdicts mean nothing",
    "cpu": "profile cpu: small models on the digits dataset at its native 8x8 pixels, trained on a 2-core CPU in "
           "minutes; the claims are tested at this scale, not at the paper's",
    "paper": "profile paper: the paper's models and training length on the user's image folder",
}


def profile_note(settings: Settings) -> str:
    """What the numbers of a build under ``settings.profile`` can and cannot show."""
    return PROFILE_NOTES.get(settings.profile, f"profile {settings.profile}")
