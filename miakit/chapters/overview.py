"""Every claim of the book in one table: the verdicts of chapters 02-07, recomputed from the run
store (every target and score there is cached, so this trains and attacks nothing new when the
chapters ran before it).
"""
from __future__ import annotations

from dataclasses import dataclass

from miakit.chapters import defenses, later_attacks
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
        """The rules, the margins, what the profile can show, how many verdicts there are and came
        out each way (``n_verdicts``, ``n_<outcome>``), the landing page's findings
        (``finding_<label>`` for each of ``FINDINGS``) and the build's manifest."""
        from miakit.book import manifest

        return {"rules": claims.rules_text(),
                "chance_delta": claims.DELTA, "narrow_margin": min(claims.MARGINS),
                "profile_note": profile_note(self.settings),
                **{f"n_{k}": v for k, v in counts(self.decided).items()}, "n_verdicts": len(self.decided),
                **{f"finding_{label}": claims.finding(self.decided, label, about) for label, about in FINDINGS},
                "manifest": manifest.table(self.settings)}

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


# the three findings the landing page leads with: whether the paper's attacks detect members, whether
# DP-SGD stops them at a cost, and whether the defenses deployed besides it do better
FINDINGS = (("C1", "the paper's loss and likelihood attacks detect members better than chance"),
            ("C5", "DP-SGD at the smallest budget brings every attack to chance, and its samples are worse"),
            ("D", f"a defense besides DP-SGD takes more than {defenses.REDUCTION:g} off the lead attack's AUC at "
                  "a smaller sample-quality cost than DP-SGD"))


def counts(verdicts: list[claims.Verdict]) -> dict[str, int]:
    """How many verdicts came out each way (for the book's prose)."""
    return {str(o).lower(): sum(v.outcome is o for v in verdicts) for o in claims.Outcome}


PROFILE_NOTES = {
    "smoke": "profile smoke: tiny models trained for seconds on a few images; its numbers test the code, not the "
             "paper, and its verdicts mean nothing",
    "cpu": "profile cpu: small models on the digits dataset at its native 8x8 pixels, trained on a 2-core CPU; "
           "the claims are tested at this scale, not at the paper's",
    "paper": "profile paper: the paper's models and training length on the user's image folder",
}


def profile_note(settings: Settings) -> str:
    """What the numbers of a build under ``settings.profile`` can and cannot show."""
    return PROFILE_NOTES.get(settings.profile, f"profile {settings.profile}")
