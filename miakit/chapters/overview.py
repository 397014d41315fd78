"""Every claim of the book in one table: the verdicts of chapters 02-07 as each chapter computed
them (``remember``: a chapter's notebook keeps its verdicts in the run store, under a key of the
settings, the datasets' pixels and miakit's code), recomputed from the run store where a chapter's
are not there (every target and score is cached, so this trains and attacks nothing new when the
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
    recomputed: list[str]  # the chapters whose verdicts were not kept (``remembered``) and were recomputed

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
                "verdicts_source": verdicts_source(self.recomputed),
                **{f"finding_{label}": claims.finding(self.decided, label, about) for label, about in FINDINGS},
                "manifest": manifest.table(self.settings)}

    def roc_figure(self):
        """Log-log ROC curves on the test part, one panel per family, every attack at its
        validation-chosen setting (chapter 06's figure)."""
        from miakit.book import plots

        return plots.roc_grid(self.attacks.roc_results())


def overview(settings: Settings, progress_bar: bool = True) -> Overview:
    """Every chapter's verdicts (``contract.Chapter.verdicts``, in book order: the split check,
    C1, C2-C4, C5 and (ours) L1), as the chapter computed them (``remembered``) or recomputed from
    the run store, and chapter 06's attacks behind the overview figure."""
    from miakit.chapters import book_chapters

    out, recomputed = [], []
    for chapter in book_chapters():
        if chapter.verdicts:
            decided = remembered(settings, chapter.number)
            if decided is None:
                recomputed.append(chapter.number)
                decided = chapter.verdicts(settings, progress_bar)
                remember(settings, chapter.number, decided)
            out += decided
    later = later_attacks.later_attacks(train.ensure_all(settings, progress_bar), progress_bar=progress_bar)
    return Overview(settings, out, later, recomputed)


def verdicts_source(recomputed: list[str]) -> str:
    """Where the claims page's verdicts came from, for its prose."""
    if not recomputed:
        return "every chapter's verdicts are the ones its notebook computed in this build, read back from the run store"
    return ("chapter " + ", ".join(recomputed) + " had not kept its verdicts (its notebook did not run with these "
            "settings and code), so they were recomputed here from its cached scores; the others are the ones "
            "their notebooks computed")


def code_digest() -> str:
    """SHA-256 (16 hex digits) of every Python file of the installed miakit package: any change to
    the code that decides a verdict changes it."""
    import hashlib
    from pathlib import Path

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _verdicts_path(settings: Settings, number: str):
    """Where chapter ``number``'s verdicts under ``settings`` are kept: the run store's ``verdicts``
    folder, under a key of every setting, the pixels of the datasets they use (the split's and the
    benchmark regime's) and ``code_digest``, so a change to any of them recomputes them."""
    from pathlib import Path

    from miakit.core import data
    from miakit.core.config import stable_hash

    d, b = settings.data, settings.benchmark
    pixels = {name: data.load(name, d.resolution).fingerprint() for name in {d.dataset, b.bench_dataset} if name}
    key = stable_hash({"chapter": number, "settings": settings.flat(), "datasets": pixels, "code": code_digest()}, 16)
    return Path(settings.runs_dir) / "verdicts" / f"chapter-{number}-{key}.json"


def remember(settings: Settings, number: str, verdicts: list[claims.Verdict]) -> None:
    """Keep chapter ``number``'s ``verdicts`` under ``settings`` for the claims page (``remembered``)."""
    from miakit.core import store

    path = _verdicts_path(settings, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {"chapter": number, "verdicts": claims.to_json(verdicts)})


def remembered(settings: Settings, number: str) -> list[claims.Verdict] | None:
    """Chapter ``number``'s verdicts as ``remember`` kept them under ``settings``, or None."""
    from miakit.core import store

    path = _verdicts_path(settings, number)
    return claims.from_json(store.read_json(path)["verdicts"]) if path.exists() else None


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
