"""The claims layer: three-valued verdicts from estimates with intervals, by rules written once.

Every claim of the paper that the book checks is a ``Verdict``: the paper's statement, one or
more ``Check`` objects (a rule applied to an estimate with its 95% bootstrap interval), and the
outcome they combine to. Three rules, each with one boundary per side and no overlap:

- **greater** (``A > B``, e.g. "smaller sets leak more" as AUC(50) - AUC(200) > 0): REPRODUCED
  when the whole interval lies above the threshold, CONTRADICTED when it lies wholly below it,
  UNDECIDED otherwise.
- **within** ("at chance", an equivalence statement): REPRODUCED when the whole AUC interval lies
  inside the chance band 0.5 +/- ``DELTA``, CONTRADICTED when it lies wholly outside, UNDECIDED
  otherwise. "The interval contains 0.5" is NOT evidence of chance: a small sample contains 0.5
  whatever the truth.
- **beats chance**: the AUC lies above the chance band, i.e. above 0.5 + ``DELTA``: the rule
  *greater* with that one threshold (REPRODUCED when the whole interval lies above 0.5 + DELTA,
  CONTRADICTED when it lies wholly below, UNDECIDED otherwise). It is the upper side of *within*
  read the other way: "beats chance" is REPRODUCED exactly when "at chance" is contradicted from
  above, and an attack is never both at chance and beating it. ``BEATS_CHANCE_TEXT`` says it in
  words for the claim statements (C1, L1).

Every rule is a one-sided test at level 2.5% at each of its boundaries (a 95% interval), so an
equivalence ("at chance") and a difference are held to the same standard. The margin ``DELTA``
decides every verdict; a check whose rule depends on it also records its outcome at each margin
of ``MARGINS`` (``Check.at_margins``), and the claims table shows what each such verdict would
be at the others.

A verdict is REPRODUCED when all its checks are, CONTRADICTED when any is, and UNDECIDED
otherwise. An UNDECIDED verdict says how many test images would decide it at the observed
effect where more images can: the bootstrap standard error shrinks as 1/sqrt(n), so the sample
must grow by (z * se / gap)^2, where gap is the distance from the estimate to the boundary it
would cross. No sample is stated where none decides the check (``Check.undecidable``): an
effect on the boundary, a degenerate interval (se 0, e.g. an AUC of 1.000 in every resample), an
interval of a difference that ends exactly on 0 (at least 2.5% of the resamples tie exactly: both
sides at a ceiling or floor, which more images do not lift). A target is defined by its members,
so a check whose estimate already scores every member of the targets it compares (the whole
split; arms defined by their member count, as C3's) cannot grow in members (``Check.grows``,
``EVERY_MEMBER_SCORED``): with one target per arm its nonmembers alone must grow, while the
members' share of an AUC's variance (n / (m + n) with no signal, Mann-Whitney) stays, and where
that share alone is too wide no sample is stated; with several training seeds per arm the
interval does not separate what more seeds and more nonmembers would buy, and none is stated.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist

from miakit.evidence.metrics import Estimate, LEVEL

CHANCE = 0.5  # the AUC of an attack that cannot tell members from nonmembers
DELTA = 0.1  # the margin that decides: |AUC - 0.5| < DELTA is "at chance", AUC > 0.5 + DELTA "beats chance"
MARGINS = (0.05, DELTA)  # margins every margin-dependent check is evaluated at (the verdict is decided at DELTA)
Z = 1.959963984540054  # two-sided 95% normal quantile, for the deciding sample size
assert abs(LEVEL - 0.95) < 1e-12, "Z is the 95% quantile"
GROWABLE = ("members", "nonmembers", "seeds")  # the parts of an estimate's sample (Estimate.sample_names, seeds)
# what can grow for a check whose estimate already scores every member of the targets it compares
# (the whole split, or arms defined by their member count): a target is defined by its members
EVERY_MEMBER_SCORED = ("nonmembers", "seeds")


def at_chance_text(delta: float = DELTA) -> str:
    """The at-chance band in words, for claim statements."""
    return f"AUC inside {CHANCE:g} +/- {delta:g}"


def beats_chance_text(delta: float = DELTA) -> str:
    """What "beats chance" asks, in words, for claim statements (C1, L1): one threshold."""
    return f"AUC above {CHANCE + delta:g}, i.e. above the chance band {CHANCE:g} +/- {delta:g}"


AT_CHANCE_TEXT = at_chance_text()
BEATS_CHANCE_TEXT = beats_chance_text()


def chance_power(n_members: int, n_nonmembers: int, delta: float = DELTA) -> float:
    """How often an attack whose true AUC is exactly 0.5 comes out REPRODUCED by ``within`` on
    one target's ``n_members`` + ``n_nonmembers`` scores, by the normal approximation: the AUC's
    standard error under no signal is sqrt((m + n + 1) / (12 m n)), the 95% interval spans
    +/- Z se, and the estimate must fall within delta - Z se of 0.5. At the cpu profile's whole
    split (100 + 1000) that is 0.82 at margin 0.1 and 0 at 0.05 (simulated with
    ``metrics.estimate_split``: 85% of 1000 splits, 0%); on its test part (50 + 500) 0.29
    (simulated: 31%)."""
    se = math.sqrt((n_members + n_nonmembers + 1) / (12 * n_members * n_nonmembers))
    return max(0.0, 2 * NormalDist().cdf((delta - Z * se) / se) - 1)


def other_margins() -> tuple[float, ...]:
    """The margins shown beside the deciding one."""
    return tuple(m for m in MARGINS if m != DELTA)


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
    outcome: Outcome  # at the deciding margin DELTA
    gap: float  # distance from the estimate to the boundary that would decide it (UNDECIDED only)
    signed: bool = False  # show the estimate with a sign (differences)
    at_margins: tuple[tuple[float, Outcome], ...] = ()  # (margin, outcome) for a rule with a chance margin
    grows: tuple[str, ...] = GROWABLE  # which parts of the sample more data can add (see ``undecidable``)
    tied: bool = False  # the interval ends exactly on the boundary: resamples tie there (a ceiling or floor)

    def outcome_at(self, margin: float) -> Outcome:
        """The outcome at chance margin ``margin`` (the outcome itself for a rule without one)."""
        return dict(self.at_margins).get(margin, self.outcome)

    @property
    def margin_dependent(self) -> bool:
        return bool(self.at_margins)

    def _growth(self) -> float:
        """The factor by which the sample must grow at the observed effect, (z se / gap)^2."""
        return max(1.0, (Z * self.estimate.se / self.gap) ** 2)

    def _member_share(self) -> float:
        """The members' share of an AUC's sampling variance with no signal, 1/(12 m) against
        1/(12 n) (Mann-Whitney): the part that more nonmembers cannot remove."""
        e = self.estimate
        return e.n_nonmembers / (e.n_members + e.n_nonmembers)

    def undecidable(self) -> str:
        """Why no sample size can be stated for this (UNDECIDED) check, or "" when one can."""
        e = self.estimate
        if not (math.isfinite(e.se) and e.se > 0) or e.low == e.high:
            return (f"{self.quantity}: every resample gives the same value (a ceiling or floor, such as an AUC of "
                    f"1.000), which no number of images moves")
        if self.tied:
            return (f"{self.quantity}: the interval ends exactly on the boundary, where at least 2.5% of the "
                    f"resamples tie (both sides at a ceiling or floor, such as AUC 1.000 against 1.000); more "
                    f"images do not separate a tie")
        if not self.gap > 0:
            return f"{self.quantity}: the observed effect sits on the decision boundary"
        if "members" in self.grows:
            return ""
        first, second = e.sample_names
        scored = (f"{self.quantity}: every {first[:-1] if first.endswith('s') else first} of the compared targets "
                  f"is already scored (a target is defined by its members)")
        if e.n_seeds > 1:
            more = " or ".join({"nonmembers": f"more test {second}", "seeds": "more training seeds"}[g]
                               for g in self.grows if g != "members")
            return (f"{scored}; only {more or 'nothing'} can be added, and the interval does not say how many "
                    f"would decide it")
        share = self._member_share()
        if "nonmembers" not in self.grows or 1 / self._growth() <= share:
            return (f"{scored}, so more images can only be more test {second}, and with {e.n_members} {first} "
                    f"they narrow the interval by at most about {1 - math.sqrt(share):.0%} (the {first}' share "
                    f"of the variance stays), not enough at the observed effect")
        return ""

    def factor(self) -> float:
        """How many times the current sample would decide this check at the observed effect
        (infinite where no sample does: ``undecidable``). Where the members cannot grow, the
        factor applies to the nonmembers alone: the members' share of the variance
        (``_member_share``) stays, so the nonmembers must grow by (1 - share) / (1 / growth - share)."""
        if self.outcome is not Outcome.UNDECIDED:
            return 1.0
        if self.undecidable():
            return math.inf
        if "members" in self.grows:
            return self._growth()
        share = self._member_share()
        return max(1.0, (1 - share) / (1 / self._growth() - share))

    def text(self) -> str:
        e = self.estimate
        seeds = f", {e.n_seeds} seeds" if e.n_seeds > 1 else ""
        others = "".join(f"; at margin {m:g}: {o}" for m, o in self.at_margins if m != DELTA)
        return f"{self.quantity} = {e.text(signed=self.signed)} ({self.rule}{seeds}{others}): {self.outcome}"


def _greater_outcome(est: Estimate, than: float) -> tuple[Outcome, float]:
    if est.low > than:
        return Outcome.REPRODUCED, 0.0
    if est.high < than:
        return Outcome.CONTRADICTED, 0.0
    return Outcome.UNDECIDED, abs(est.value - than)


def greater(quantity: str, est: Estimate, than: float = 0.0, signed: bool = True,
            grows: tuple[str, ...] = GROWABLE) -> Check:
    """The claim "quantity > than": REPRODUCED when the whole interval lies above ``than``,
    CONTRADICTED when it lies wholly below, else UNDECIDED. ``grows``: the parts of the sample
    that more data could add (leave out "members" where the arms are defined by their member
    count)."""
    outcome, gap = _greater_outcome(est, than)
    tied = outcome is Outcome.UNDECIDED and than in (est.low, est.high)
    return Check(quantity, est, f"> {than:g}", outcome, gap, signed, grows=grows, tied=tied)


def _within_outcome(est: Estimate, center: float, delta: float) -> tuple[Outcome, float]:
    lo_b, hi_b = center - delta, center + delta
    if lo_b < est.low and est.high < hi_b:
        return Outcome.REPRODUCED, 0.0
    if est.low > hi_b or est.high < lo_b:
        return Outcome.CONTRADICTED, 0.0
    d = abs(est.value - center)
    return Outcome.UNDECIDED, abs(delta - d)


def within(quantity: str, est: Estimate, center: float = CHANCE, delta: float = DELTA,
           grows: tuple[str, ...] = GROWABLE) -> Check:
    """The claim "quantity is within ``delta`` of ``center``" (an AUC at chance): REPRODUCED when
    the whole interval lies inside, CONTRADICTED when it lies wholly outside, else UNDECIDED;
    the outcome at every margin of ``MARGINS`` is kept beside it."""
    outcome, gap = _within_outcome(est, center, delta)
    margins = tuple((m, _within_outcome(est, center, m)[0]) for m in sorted({*MARGINS, delta}))
    return Check(quantity, est, f"inside {center:g} +/- {delta:g}", outcome, gap, at_margins=margins, grows=grows)


def beats_chance(quantity: str, est: Estimate, delta: float = DELTA, grows: tuple[str, ...] = GROWABLE) -> Check:
    """An AUC beats chance: it lies above the chance band, AUC > 0.5 + ``delta``
    (``BEATS_CHANCE_TEXT``). REPRODUCED when the whole interval lies above 0.5 + delta,
    CONTRADICTED when it lies wholly below, UNDECIDED otherwise; the outcome at every margin of
    ``MARGINS`` is kept beside it."""
    than = CHANCE + delta
    outcome, gap = _greater_outcome(est, than)
    margins = tuple((m, _greater_outcome(est, CHANCE + m)[0]) for m in sorted({*MARGINS, delta}))
    return Check(quantity, est, f"beats chance: > {CHANCE:g} + {delta:g}", outcome, gap, False, margins, grows)


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

    def outcome_at(self, margin: float) -> Outcome:
        """The verdict had the chance margin been ``margin`` (the same for rules without one)."""
        return combine(c.outcome_at(margin) for c in self.checks)

    @property
    def margin_dependent(self) -> bool:
        return any(c.margin_dependent for c in self.checks)

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
        """For an UNDECIDED verdict: the test sample that would decide it at the observed effect,
        or why no sample of images does."""
        if self.outcome is not Outcome.UNDECIDED:
            return ""
        if not self.checks:
            return "nothing was measured: " + (self.note or "no data")
        undecided = [c for c in self.checks if c.outcome is Outcome.UNDECIDED]
        reasons = [c.undecidable() for c in undecided if c.undecidable()]
        if reasons:
            return "no sample size decides it: " + "; ".join(dict.fromkeys(reasons))
        f = self.factor()
        worst = max(undecided, key=Check.factor)
        e = worst.estimate
        first, second = e.sample_names
        if "members" not in worst.grows:  # every member scored: the nonmembers alone grow
            return (f"about {math.ceil(f * e.n_nonmembers)} {second} with the same {e.n_members} {first} "
                    f"(every one already scored)")
        seeds = f" and {math.ceil(f * e.n_seeds)} training seeds" if e.n_seeds > 1 else ""
        return (f"about {f:.1f}x the sample: {math.ceil(f * e.n_members)} {first} and "
                f"{math.ceil(f * e.n_nonmembers)} {second} per arm{seeds}")

    def row(self, link_prefix: str = "../") -> dict:
        figure = (f'<a href="{link_prefix}{_html_path(self.figure)}">figure</a>' if self.figure else "")
        margins = {f"verdict at margin {m:g}": str(self.outcome_at(m)) if self.margin_dependent else ""
                   for m in other_margins()}
        return {"claim": self.claim, "the paper says": self.statement, "this build": self.evidence("<br>"),
                "verdict": str(self.outcome), **margins, "what would decide it": self.deciding(), "figure": figure}


def _html_path(figure: str) -> str:
    page, _, anchor = figure.partition("#")
    return page + ".html" + (f"#{anchor}" if anchor else "")


def table(verdicts: list[Verdict], link_prefix: str = "../", brief: bool = False):
    """One row per claim, as a pandas Styler so that the book shows the whole text and the
    figure links (``.data`` is the DataFrame). Columns: the claim, what the paper says, this
    build's evidence, the verdict (decided at margin ``DELTA``), the verdict at each other
    margin of ``MARGINS`` (blank where no rule of the claim has a margin), what would decide an
    UNDECIDED verdict, and the figure. Links are relative to a page one folder below the book
    root (book/ or notebooks/). ``brief`` leaves out "what would decide it" (the landing page's
    text column is too narrow for every column; the claims page shows it)."""
    import pandas as pd

    frame = pd.DataFrame([v.row(link_prefix) for v in verdicts]).set_index("claim")
    if brief:
        frame = frame.drop(columns=["what would decide it"])
    colours = {"REPRODUCED": "#dff0d8", "CONTRADICTED": "#f2dede", "UNDECIDED": "#fcf8e3"}
    coloured = ["verdict"] + [f"verdict at margin {m:g}" for m in other_margins()]
    return (frame.style.set_properties(**{"text-align": "left", "white-space": "normal"})
            .map(lambda v: f"background-color: {colours.get(v, '')}", subset=coloured))


def glue_values(verdicts: list[Verdict]) -> dict[str, str]:
    """``verdict_<claim>`` -> "REPRODUCED" / "CONTRADICTED" / "UNDECIDED", for the book's prose."""
    return {"verdict_" + re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", v.claim)).strip("_"): str(v.outcome)
            for v in verdicts}


def group(claim: str) -> str:
    """A claim's label without what it is asked of: "C1 loss (ddpm)" -> "C1", "IID split" -> "IID"."""
    return claim.split()[0]


def finding(verdicts: list[Verdict], label: str, about: str) -> str:
    """One sentence for the landing page: how the verdicts of claim group ``label`` came out,
    ``about`` saying in words what the group claims; says so when the build has none."""
    mine = [v for v in verdicts if group(v.claim) == label]
    if not mine:
        return f"{label} ({about}): not judged in this build."
    n = {o: sum(v.outcome is o for v in mine) for o in Outcome}
    parts = [f"{n[o]} {o}" for o in Outcome if n[o]]
    return f"{label} ({about}): of {len(mine)} verdict{'s' if len(mine) > 1 else ''}, " + ", ".join(parts) + "."


def rules_text() -> str:
    """The verdict rules in one paragraph, for the book."""
    others = " and ".join(f"{m:g}" for m in other_margins())
    return (f"Each verdict is computed from 95% bootstrap intervals (over test images, and over training "
            f"seeds where a claim compares separately trained targets). 'A > B': REPRODUCED when the whole "
            f"interval of the difference lies above 0, CONTRADICTED when it lies wholly below 0, UNDECIDED "
            f"otherwise. 'at chance' (an equivalence statement): REPRODUCED when the whole AUC interval lies "
            f"inside the chance band {CHANCE:g} +/- {DELTA:g}, CONTRADICTED when it lies wholly outside it, "
            f"UNDECIDED otherwise; an interval that merely contains {CHANCE:g} decides nothing. 'beats chance': "
            f"the AUC lies above the chance band, i.e. above {CHANCE + DELTA:g}: REPRODUCED when the whole AUC "
            f"interval lies above {CHANCE + DELTA:g}, CONTRADICTED when it lies wholly below {CHANCE + DELTA:g}, "
            f"UNDECIDED otherwise, so no attack is both at chance and beating it. The margin {DELTA:g} decides "
            f"every verdict; a verdict whose rules use it is also shown at margin {others}. A claim made of "
            f"several checks is REPRODUCED when all are and CONTRADICTED when any is. An UNDECIDED verdict states "
            f"the test sample that would decide it at the observed effect, from the bootstrap standard error "
            f"shrinking as 1/sqrt(n), where more images can decide it: not where the interval sits at a ceiling "
            f"or floor (AUC 1.000 against 1.000), and never by adding members where every member of the compared "
            f"targets is already scored (a target is defined by its members: the whole split, or C3's arms of "
            f"different member counts); there only more nonmembers or training seeds can be added.")


def to_json(verdicts: list[Verdict]) -> list[dict]:
    """``verdicts`` as plain JSON values (``from_json`` reads them back)."""
    return [dataclasses.asdict(v) for v in verdicts]


def from_json(rows: list[dict]) -> list[Verdict]:
    """The verdicts ``to_json`` wrote, with their checks, estimates and outcomes."""
    def check(c: dict) -> Check:
        e = c["estimate"]
        estimate = Estimate(**{**e, "per_seed": tuple(e["per_seed"]), "sample_names": tuple(e["sample_names"])})
        return Check(**{**c, "estimate": estimate, "outcome": Outcome(c["outcome"]), "grows": tuple(c["grows"]),
                        "at_margins": tuple((float(m), Outcome(o)) for m, o in c["at_margins"])})
    return [Verdict(**{**row, "checks": tuple(check(c) for c in row["checks"])}) for row in rows]
