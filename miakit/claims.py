"""The claims layer: three-valued verdicts from estimates with intervals, by rules written once.

Every claim of the paper that the book checks is a ``Verdict``: the paper's statement, one or
more ``Check`` objects (a rule applied to an estimate with its 95% bootstrap interval), and the
outcome they combine to. The rules:

- **greater** (``A > B``, e.g. "smaller sets leak more" as AUC(50) - AUC(200) > 0): REPRODUCED
  when the whole interval lies above the threshold, CONTRADICTED when it lies below it (plus an
  optional margin), UNDECIDED otherwise. "An attack beats chance" is AUC > 0.5 with a margin of
  ``DELTA``: an interval wholly below 0.5 + DELTA contradicts it (the attack is at chance, or
  worse, in the sense of the next rule).
- **within** ("at chance", an equivalence statement): REPRODUCED when the whole interval lies
  inside 0.5 +/- ``DELTA``, CONTRADICTED when it lies wholly outside, UNDECIDED otherwise.
  "The interval contains 0.5" is NOT evidence of chance: a small sample contains 0.5 whatever
  the truth.

A verdict is REPRODUCED when all its checks are, CONTRADICTED when any is, and UNDECIDED
otherwise. An UNDECIDED verdict says how many test images would decide it at the observed
effect: the bootstrap standard error shrinks as 1/sqrt(n), so the sample must grow by
(z * se / gap)^2, where gap is the distance from the estimate to the boundary it would cross.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from .metrics import Estimate, LEVEL

DELTA = 0.1  # equivalence margin around AUC 0.5: |AUC - 0.5| < DELTA is "at chance"
Z = 1.959963984540054  # two-sided 95% normal quantile, for the deciding sample size
assert abs(LEVEL - 0.95) < 1e-12, "Z is the 95% quantile"


class Outcome(str, Enum):
    REPRODUCED = "REPRODUCED"
    CONTRADICTED = "CONTRADICTED"
    UNDECIDED = "UNDECIDED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Check:
    """One rule applied to one estimate."""

    quantity: str  # what was estimated, e.g. "AUC(50 members) - AUC(200 members)"
    estimate: Estimate
    rule: str  # the rule in words
    outcome: Outcome
    gap: float  # distance from the estimate to the boundary that would decide it (UNDECIDED only)
    signed: bool = False  # show the estimate with a sign (differences)

    def factor(self) -> float:
        """How many times the current sample would decide this check at the observed effect."""
        if self.outcome is not Outcome.UNDECIDED:
            return 1.0
        if not (self.gap > 0 and self.estimate.se > 0):
            return math.inf
        return max(1.0, (Z * self.estimate.se / self.gap) ** 2)

    def text(self) -> str:
        e = self.estimate
        seeds = f", {e.n_seeds} seeds" if e.n_seeds > 1 else ""
        return f"{self.quantity} = {e.text(signed=self.signed)} ({self.rule}{seeds}): {self.outcome}"


def greater(quantity: str, est: Estimate, than: float = 0.0, margin: float = 0.0, signed: bool = True) -> Check:
    """The claim "quantity > than": REPRODUCED when the interval lies above ``than``,
    CONTRADICTED when it lies below ``than + margin``, else UNDECIDED."""
    if est.low > than:
        outcome, gap = Outcome.REPRODUCED, 0.0
    elif est.high < than + margin:
        outcome, gap = Outcome.CONTRADICTED, 0.0
    else:
        outcome = Outcome.UNDECIDED
        gaps = [est.value - than] if est.value > than else []
        gaps += [than + margin - est.value] if est.value < than + margin else []
        gap = max(gaps, default=0.0)
    rule = f"> {than:g}" + (f"; below {than + margin:g} contradicts" if margin else "")
    return Check(quantity, est, rule, outcome, gap, signed)


def within(quantity: str, est: Estimate, center: float = 0.5, delta: float = DELTA) -> Check:
    """The claim "quantity is within ``delta`` of ``center``" (e.g. an AUC at chance):
    REPRODUCED when the whole interval lies inside, CONTRADICTED when wholly outside."""
    lo_b, hi_b = center - delta, center + delta
    if lo_b < est.low and est.high < hi_b:
        outcome, gap = Outcome.REPRODUCED, 0.0
    elif est.low >= hi_b or est.high <= lo_b:
        outcome, gap = Outcome.CONTRADICTED, 0.0
    else:
        outcome = Outcome.UNDECIDED
        d = abs(est.value - center)
        gap = delta - d if d < delta else d - delta
    return Check(quantity, est, f"inside {center:g} +/- {delta:g}", outcome, gap)


def beats_chance(quantity: str, est: Estimate) -> Check:
    """AUC > 0.5; contradicted when the interval lies below 0.5 + DELTA (at chance or worse)."""
    return greater(quantity, est, than=0.5, margin=DELTA, signed=False)


def combine(outcomes) -> Outcome:
    outcomes = list(outcomes)
    if not outcomes:
        return Outcome.UNDECIDED
    if any(o is Outcome.CONTRADICTED for o in outcomes):
        return Outcome.CONTRADICTED
    if all(o is Outcome.REPRODUCED for o in outcomes):
        return Outcome.REPRODUCED
    return Outcome.UNDECIDED


@dataclass(frozen=True)
class Verdict:
    """A claim tested on this build's runs."""

    claim: str  # short name, e.g. "C3 (equal epochs)"
    statement: str  # what the paper says, in our terms
    checks: tuple[Check, ...]
    figure: str = ""  # the supporting figure: a page path from the book root with an anchor
    note: str = ""  # why nothing could be measured, where that is the case

    @property
    def outcome(self) -> Outcome:
        return combine(c.outcome for c in self.checks)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.REPRODUCED

    def evidence(self, sep: str = "; ") -> str:
        parts = [c.text() for c in self.checks]
        return sep.join(parts + ([self.note] if self.note else [])) or "not measured"

    def factor(self) -> float:
        """Sample growth that decides every undecided check at the observed effects."""
        undecided = [c.factor() for c in self.checks if c.outcome is Outcome.UNDECIDED]
        return max(undecided, default=math.inf if not self.checks else 1.0)

    def deciding(self) -> str:
        """For an UNDECIDED verdict: the test sample that would decide it at the observed effect."""
        if self.outcome is not Outcome.UNDECIDED:
            return ""
        if not self.checks:
            return "nothing was measured: " + (self.note or "no data")
        f = self.factor()
        if not math.isfinite(f):
            return "no sample size: the observed effect sits on the decision boundary"
        worst = max((c for c in self.checks if c.outcome is Outcome.UNDECIDED), key=Check.factor)
        e = worst.estimate
        seeds = f" and {math.ceil(f * e.n_seeds)} training seeds" if e.n_seeds > 1 else ""
        first, second = e.sample_names
        return (f"about {f:.1f}x the sample: {math.ceil(f * e.n_members)} {first} and "
                f"{math.ceil(f * e.n_nonmembers)} {second} per arm{seeds}")

    def row(self, link_prefix: str = "../") -> dict:
        figure = (f'<a href="{link_prefix}{_html_path(self.figure)}">figure</a>' if self.figure else "")
        return {"claim": self.claim, "the paper says": self.statement, "this build": self.evidence("<br>"),
                "verdict": str(self.outcome), "what would decide it": self.deciding(), "figure": figure}


def _html_path(figure: str) -> str:
    page, _, anchor = figure.partition("#")
    return page + ".html" + (f"#{anchor}" if anchor else "")


def table(verdicts: list[Verdict], link_prefix: str = "../"):
    """One row per claim, as a pandas Styler so that the book shows the whole text and the
    figure links (``.data`` is the DataFrame). Links are relative to a page one folder below
    the book root (book/ or notebooks/)."""
    import pandas as pd

    frame = pd.DataFrame([v.row(link_prefix) for v in verdicts]).set_index("claim")
    colours = {"REPRODUCED": "#dff0d8", "CONTRADICTED": "#f2dede", "UNDECIDED": "#fcf8e3"}
    return (frame.style.set_properties(**{"text-align": "left", "white-space": "normal"})
            .map(lambda v: f"background-color: {colours.get(v, '')}", subset=["verdict"]))


def glue_values(verdicts: list[Verdict]) -> dict[str, str]:
    """``verdict_<claim>`` -> "REPRODUCED" / "CONTRADICTED" / "UNDECIDED", for the book's prose."""
    return {"verdict_" + re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", v.claim)).strip("_"): str(v.outcome)
            for v in verdicts}


def rules_text() -> str:
    """The verdict rules in one paragraph, for the book."""
    return (f"Each verdict is computed from 95% bootstrap intervals (over test images, and over training "
            f"seeds where a claim compares separately trained targets). *A > B*: REPRODUCED when the interval "
            f"of the difference lies above 0, CONTRADICTED when below 0, UNDECIDED otherwise. *At chance*: "
            f"REPRODUCED when the whole AUC interval lies inside 0.5 +/- {DELTA:g}, CONTRADICTED when wholly "
            f"outside; an interval that merely contains 0.5 decides nothing. *Beats chance*: REPRODUCED when the "
            f"AUC interval lies above 0.5, CONTRADICTED when it lies below 0.5 + {DELTA:g}. A claim made of several "
            f"checks is REPRODUCED when all are and CONTRADICTED when any is. An UNDECIDED verdict states the test "
            f"sample that would decide it at the observed effect, from the bootstrap standard error shrinking as "
            f"1/sqrt(n).")
