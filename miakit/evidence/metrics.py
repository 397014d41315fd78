"""Attack metrics: ROC, AUC, attack success rate, TPR at low FPR in two conventions, intervals.

Standard convention (reported first): members are positive, scores are higher for members.

Paper-code convention (reported beside it, labelled): the paper's code labels members 0 and
nonmembers 1 and feeds the raw loss as the score, so its "TPR" is the rate at which NONmembers are
detected at a given rate of members flagged as nonmembers. Here that is the ROC of
(is_nonmember, -score).

A TPR at FPR x is only reported when the sample can resolve x, i.e. when 1/n_negatives <= x;
otherwise it is NaN and ``notes`` says why.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import auc as area_under, roc_curve

FPR_LEVELS = (0.1, 0.01, 0.001, 0.0001)
UNRESOLVABLE = "not measurable: too few test nonmembers"  # Estimate.text of a TPR at an FPR below 1 / n
NOT_APPLICABLE = "not applicable"  # a blank cell of a table outside its TPR columns


@dataclass(frozen=True)
class AttackResult:
    auc: float
    asr: float  # best balanced accuracy over thresholds
    tpr_at_fpr: dict[float, float]  # members positive
    paper_tpr_at_fpr: dict[float, float]  # paper code's convention: nonmembers positive, score = loss
    fpr: np.ndarray
    tpr: np.ndarray
    n_members: int
    n_nonmembers: int
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        """A flat dict for tables: AUC, ASR, TPR@FPR (both conventions)."""
        out = {"AUC": self.auc, "ASR": self.asr}
        out.update({f"TPR@{_pct(x)}FPR": v for x, v in self.tpr_at_fpr.items()})
        out.update({f"paper TPR@{_pct(x)}FPR": v for x, v in self.paper_tpr_at_fpr.items()})
        return out


def measurable(frame):
    """``frame`` without the columns that no row can fill (a TPR at an FPR below one over the
    number of test negatives: NaN, or ``UNRESOLVABLE`` text, in every row), their names kept in ``frame.attrs["unmeasurable"]``
    for the caption, and any NaN cell left in a measured column written as what it is: a TPR
    ``UNRESOLVABLE`` (too few test members for the paper convention's), any other cell ``NOT_APPLICABLE``."""
    empty = [c for c in frame.columns if (frame[c].isna() | frame[c].isin([UNRESOLVABLE, ""])).all()]
    out = frame.drop(columns=empty)
    partial = [c for c in out.columns if out[c].isna().any()]
    if partial:
        out = out.astype({c: object for c in partial})
        for c in partial:
            out.loc[out[c].isna(), c] = _blank(str(c))
    out.attrs["unmeasurable"] = empty
    return out


def _blank(column: str) -> str:
    if column.startswith("paper TPR"):  # the paper's convention: members are its negatives
        return UNRESOLVABLE.replace("nonmembers", "members")
    return UNRESOLVABLE if "TPR" in column else NOT_APPLICABLE


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, level: float, n_negatives: int) -> float:
    """Largest TPR among ROC points with FPR <= level; NaN when 1/n_negatives > level."""
    if n_negatives * level < 1:
        return float("nan")
    return float(tpr[fpr <= level + 1e-12].max())


def _check(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_member = np.asarray(is_member).astype(bool).ravel()
    if scores.shape != is_member.shape:
        raise ValueError(f"{scores.shape[0]} scores but {is_member.shape[0]} membership labels")
    if is_member.all() or not is_member.any():
        raise ValueError("need both members and nonmembers to evaluate an attack")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return scores, is_member


def evaluate(scores, is_member, levels=FPR_LEVELS) -> AttackResult:
    """Evaluate member scores (higher = member) against true membership."""
    scores, is_member = _check(scores, is_member)
    n_mem, n_non = int(is_member.sum()), int((~is_member).sum())
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    # the paper's convention (nonmembers positive, the loss as score) thresholds the same distinct
    # scores from the other end: its ROC points are this curve's, mirrored, (1 - tpr, 1 - fpr) in
    # reverse order, exactly (a second roc_curve and roc_auc_score tripled the cost of every
    # evaluation; the claims page makes thousands)
    pfpr, ptpr = 1.0 - tpr[::-1], 1.0 - fpr[::-1]
    notes = []
    for x in levels:
        if n_non * x < 1:
            notes.append(f"TPR@{_pct(x)}FPR needs >= {int(np.ceil(1 / x))} nonmembers, have {n_non}")
        if n_mem * x < 1:
            notes.append(f"paper TPR@{_pct(x)}FPR needs >= {int(np.ceil(1 / x))} members, have {n_mem}")
    return AttackResult(
        auc=float(area_under(fpr, tpr)),  # what roc_auc_score computes: the trapezoids under this curve
        asr=float(np.max(0.5 * (tpr + 1.0 - fpr))),
        tpr_at_fpr={x: tpr_at_fpr(fpr, tpr, x, n_non) for x in levels},
        paper_tpr_at_fpr={x: tpr_at_fpr(pfpr, ptpr, x, n_mem) for x in levels},
        fpr=fpr, tpr=tpr, n_members=n_mem, n_nonmembers=n_non, notes=notes,
    )


def evaluate_split(member_scores, nonmember_scores, levels=FPR_LEVELS) -> AttackResult:
    """``evaluate`` for scores already separated into members and nonmembers."""
    m, n = np.asarray(member_scores).ravel(), np.asarray(nonmember_scores).ravel()
    return evaluate(np.concatenate([m, n]), np.r_[np.ones(len(m), bool), np.zeros(len(n), bool)], levels)


def auc_of(member_scores, nonmember_scores) -> float:
    """AUC as P(member score > nonmember score) + P(tie) / 2 (Mann-Whitney), equal to
    scikit-learn's roc_auc_score; sorting once makes it fast enough for bootstrap loops."""
    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.sort(np.asarray(nonmember_scores, dtype=np.float64).ravel())
    below = np.searchsorted(n, m, side="left")
    ties = np.searchsorted(n, m, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(m) * len(n)))


N_BOOT = 1000  # bootstrap resamples behind every interval in the book
LEVEL = 0.95  # and their coverage


def tpr_of(member_scores, nonmember_scores, fpr: float) -> float:
    """TPR at ``fpr`` (members positive) by the rule of ``tpr_at_fpr`` (NaN when fewer than
    1/fpr nonmembers), without building the ROC curve: fast enough for bootstrap loops.

    With k = floor(fpr * n_nonmembers) nonmembers allowed above the threshold, the best
    threshold sits just above the (k+1)-th highest nonmember score, and TPR is the share of
    members strictly above that score."""
    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(n) * fpr < 1:
        return float("nan")
    return float(np.mean(m > _threshold(n, fpr)))


def statistic_fn(statistic):
    """``"auc"`` -> AUC; a float x -> TPR at FPR x; a callable (members, nonmembers) -> float as is."""
    if callable(statistic):
        return statistic
    if statistic == "auc":
        return auc_of
    if isinstance(statistic, float) and 0 < statistic < 1:
        return lambda m, n: tpr_of(m, n, statistic)
    raise ValueError(f"unknown statistic {statistic!r}; use 'auc', an FPR level in (0, 1) or a callable")


@dataclass(frozen=True)
class Arm:
    """Member scores of the same test images under one or more independently trained targets:
    one row per training seed (``members`` [n_seeds, n_members], ``nonmembers`` [n_seeds, n_nonmembers]).

    ``member_groups`` and ``nonmember_groups`` (optional, one integer per image) cut the images
    into strata whose scores are not comparable with each other (for example the two halves of
    a cross-fitted attack, each scored at its own step): a statistic is then computed within
    each stratum and averaged, and the bootstrap resamples within strata."""

    members: np.ndarray
    nonmembers: np.ndarray
    member_groups: np.ndarray | None = None
    nonmember_groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        m, n = np.atleast_2d(np.asarray(self.members, np.float64)), np.atleast_2d(np.asarray(self.nonmembers, np.float64))
        if m.shape[0] != n.shape[0] or m.shape[1] == 0 or n.shape[1] == 0:
            raise ValueError(f"an arm needs members and nonmembers for every seed, got {m.shape} and {n.shape}")
        if not (np.isfinite(m).all() and np.isfinite(n).all()):
            raise ValueError("scores contain NaN or infinity")
        object.__setattr__(self, "members", m)
        object.__setattr__(self, "nonmembers", n)
        if (self.member_groups is None) != (self.nonmember_groups is None):
            raise ValueError("give groups for both members and nonmembers, or for neither")
        if self.member_groups is not None:
            gm, gn = np.asarray(self.member_groups, int), np.asarray(self.nonmember_groups, int)
            if gm.shape != (m.shape[1],) or gn.shape != (n.shape[1],) or set(gm) != set(gn):
                raise ValueError("every image needs a group, and every group members and nonmembers")
            object.__setattr__(self, "member_groups", gm)
            object.__setattr__(self, "nonmember_groups", gn)

    @classmethod
    def of(cls, pairs, member_groups=None, nonmember_groups=None) -> "Arm":
        """From (member scores, nonmember scores) per training seed, the same images in each."""
        pairs = list(pairs)
        if len({(len(m), len(n)) for m, n in pairs}) != 1:
            raise ValueError("every seed of an arm must score the same members and nonmembers")
        return cls(np.stack([np.asarray(m, np.float64) for m, _ in pairs]),
                   np.stack([np.asarray(n, np.float64) for _, n in pairs]), member_groups, nonmember_groups)

    @property
    def n_seeds(self) -> int:
        return self.members.shape[0]

    def strata(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(member positions, nonmember positions) of each stratum (one stratum without groups)."""
        if self.member_groups is None:
            return [(np.arange(self.members.shape[1]), np.arange(self.nonmembers.shape[1]))]
        return [(np.flatnonzero(self.member_groups == g), np.flatnonzero(self.nonmember_groups == g))
                for g in np.unique(self.member_groups)]

    def per_seed(self, statistic="auc") -> np.ndarray:
        fn = statistic_fn(statistic)
        strata = self.strata()
        return np.array([np.mean([fn(m[im], n[inn]) for im, inn in strata])
                         for m, n in zip(self.members, self.nonmembers)])


@dataclass(frozen=True)
class Estimate:
    """A statistic (mean over seeds) with its percentile bootstrap interval and standard error,
    and the sample behind it (per arm: test members, test nonmembers, training seeds)."""

    value: float
    low: float
    high: float
    se: float
    n_members: int
    n_nonmembers: int
    n_seeds: int = 1
    per_seed: tuple[float, ...] = ()
    sample_names: tuple[str, str] = ("members", "nonmembers")  # what n_members and n_nonmembers count

    def text(self, digits: int = 3, signed: bool = False) -> str:
        """``value [low, high]``; in words when there is no value (a TPR at an FPR below one
        over the number of test nonmembers: no threshold can show it)."""
        if not np.isfinite(self.value):
            return UNRESOLVABLE
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        return f"{f.format(self.value)} [{f.format(self.low)}, {f.format(self.high)}]"

    def interval(self, digits: int = 3) -> str:
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def named(self, name: str) -> dict[str, float]:
        """``name``, ``name_low`` and ``name_high``: the value and its 95% interval, for the book's glue."""
        return {name: self.value, f"{name}_low": self.low, f"{name}_high": self.high}


AUC_COLUMN = "AUC [95%]"
LOW_FPRS = (0.01, 0.001)  # the FPRs the results tables report TPR at (the paper's 1% and 0.1%)


def tpr_column(fpr: float) -> str:
    """The one spelling of a TPR column: ``TPR@1%FPR [95%]``."""
    return f"TPR@{100 * fpr:g}%FPR [95%]"


def estimate_row(auc: Estimate, tprs: dict[float, Estimate] | None = None, counts: bool = True) -> dict:
    """The estimate columns of every results table, in one spelling: the AUC and the TPR at each
    FPR of ``tprs`` with their 95% intervals (``Estimate.text``) and, with ``counts``, the test
    images the AUC rests on."""
    row = {AUC_COLUMN: auc.text(), **{tpr_column(f): e.text() for f, e in (tprs or {}).items()}}
    if counts:
        row.update({"members scored": auc.n_members, "nonmembers scored": auc.n_nonmembers})
    return row


def _bootstrap(arms: list[Arm], statistic, paired: bool, n_boot: int, seed: int):
    """Replicates [n_boot, n_arms] of each arm's mean-over-seeds statistic. Members and
    nonmembers are resampled separately (never pooled) and within each stratum, the same image
    indices for every seed of an arm (they score the same images); the seeds of each arm are
    resampled too (when it has more than one). ``paired``: the arms score the same images with
    the same seeds (seed s of each arm shares its initial weights and batches), so every arm
    gets the same image and seed draws."""
    fn = statistic_fn(statistic)
    if paired and len({(a.members.shape[1], a.nonmembers.shape[1], a.n_seeds) for a in arms}) != 1:
        raise ValueError("a paired comparison needs the same members, nonmembers and seeds on both sides")
    if paired and any(not _same_strata(arms[0], a) for a in arms[1:]):
        raise ValueError("a paired comparison needs the same strata on both sides")
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, len(arms)))
    for b in range(n_boot):
        shared = None
        for a, arm in enumerate(arms):
            if shared is None or not paired:
                draws = [(rng.choice(im, len(im)), rng.choice(inn, len(inn))) for im, inn in arm.strata()]
                seeds = rng.integers(0, arm.n_seeds, arm.n_seeds) if arm.n_seeds > 1 else np.zeros(1, int)
                shared = draws, seeds
            draws, seeds = shared
            values = np.array([np.mean([fn(m[im], n[inn]) for im, inn in draws])
                               for m, n in zip(arm.members, arm.nonmembers)])
            reps[b, a] = values[seeds].mean()
    return reps


def _same_strata(a: Arm, b: Arm) -> bool:
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a.strata(), b.strata())) \
        and len(a.strata()) == len(b.strata())


def _estimate(value: float, reps: np.ndarray, arms: list[Arm], per_seed=()) -> Estimate:
    alpha = (1 - LEVEL) / 2
    finite = reps[np.isfinite(reps)]
    lo, hi = np.quantile(finite, [alpha, 1 - alpha]) if len(finite) else (np.nan, np.nan)
    return Estimate(float(value), float(lo), float(hi), float(np.std(finite)) if len(finite) else np.nan,
                    min(a.members.shape[1] for a in arms), min(a.nonmembers.shape[1] for a in arms),
                    min(a.n_seeds for a in arms), tuple(float(v) for v in per_seed))


def members_above(arm: Arm, fpr: float) -> tuple[float, int]:
    """(k, n) behind a TPR at ``fpr``: k members above the threshold of ``tpr_of`` (summed over
    strata, averaged over seeds: the seeds score the same images) out of n member images."""
    k = np.mean([sum(float(np.sum(m[im] > _threshold(n[inn], fpr))) for im, inn in arm.strata())
                 for m, n in zip(arm.members, arm.nonmembers)])
    return float(k), arm.members.shape[1]


def _threshold(nonmembers: np.ndarray, fpr: float) -> float:
    """The score a member must exceed for a TPR at ``fpr`` (the rule of ``tpr_of``)."""
    n = np.sort(nonmembers)
    k = int(np.floor(fpr * len(n) + 1e-9))
    return -np.inf if k >= len(n) else float(n[len(n) - k - 1])


def clopper_pearson(k: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion, k successes of n: the
    alpha/2 quantile of Beta(k, n - k + 1) and the 1 - alpha/2 quantile of Beta(k + 1, n - k),
    0 at k = 0 and 1 at k = n."""
    from scipy.stats import beta

    alpha = (1 - level) / 2
    low = 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return low, high


def estimate(arm: Arm, statistic="auc", n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """The arm's statistic (AUC by default; a float = TPR at that FPR), averaged over its seeds,
    with a 95% bootstrap interval over images and seeds.

    A TPR's interval is never narrower than the exact (Clopper-Pearson) interval of its members'
    count above the measured threshold (``members_above``): a bootstrap cannot move a count of 0
    or of every member, and alone it printed ``0.000 [0.000, 0.000]`` for a TPR at 0.1% FPR
    measured on 175 members, as if no member could ever lie above that threshold."""
    per_seed = arm.per_seed(statistic)
    reps = _bootstrap([arm], statistic, False, n_boot, seed)[:, 0]
    out = _estimate(per_seed.mean(), reps, [arm], per_seed)
    if isinstance(statistic, float) and np.isfinite(out.value):
        low, high = clopper_pearson(*members_above(arm, statistic))
        out = dataclasses.replace(out, low=min(out.low, low), high=max(out.high, high))
    return out


def estimate_difference(a: Arm, b: Arm, paired: bool, statistic="auc", n_boot: int = N_BOOT,
                        seed: int = 0) -> Estimate:
    """statistic(a) - statistic(b) with a 95% bootstrap interval. ``paired``: both arms score
    the same images (same order), so each resample draws the same images for both."""
    reps = _bootstrap([a, b], statistic, paired, n_boot, seed)
    return _estimate(a.per_seed(statistic).mean() - b.per_seed(statistic).mean(), reps[:, 0] - reps[:, 1], [a, b])


def estimate_split(member_scores, nonmember_scores, statistic="auc", n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """``estimate`` for one target's member and nonmember scores."""
    return estimate(Arm(member_scores, nonmember_scores), statistic, n_boot, seed)
