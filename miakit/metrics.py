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

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

FPR_LEVELS = (0.1, 0.01, 0.001, 0.0001)


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
    pfpr, ptpr, _ = roc_curve(~is_member, -scores, drop_intermediate=False)
    notes = []
    for x in levels:
        if n_non * x < 1:
            notes.append(f"TPR@{_pct(x)}FPR needs >= {int(np.ceil(1 / x))} nonmembers, have {n_non}")
        if n_mem * x < 1:
            notes.append(f"paper TPR@{_pct(x)}FPR needs >= {int(np.ceil(1 / x))} members, have {n_mem}")
    return AttackResult(
        auc=float(roc_auc_score(is_member, scores)),
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


def bootstrap_auc(scores, is_member, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling members and nonmembers separately."""
    scores, is_member = _check(scores, is_member)
    rng = np.random.default_rng(seed)
    mem, non = scores[is_member], scores[~is_member]
    aucs = np.empty(n_boot)
    for i in range(n_boot):
        aucs[i] = auc_of(rng.choice(mem, len(mem)), rng.choice(non, len(non)))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(aucs, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_auc_difference(a_members, a_nonmembers, b_members, b_nonmembers, paired: bool,
                             n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) with a percentile bootstrap interval: (difference, low, high).

    ``paired``: a and b score the same images (same order), so each resample draws the same
    members and nonmembers for both; otherwise a and b are resampled independently.
    """
    am, an, bm, bn = (np.asarray(v, dtype=np.float64).ravel() for v in (a_members, a_nonmembers, b_members, b_nonmembers))
    if paired and (len(am) != len(bm) or len(an) != len(bn)):
        raise ValueError("paired comparison needs the same members and nonmembers on both sides")
    for part in (am, an, bm, bn):
        if len(part) == 0 or not np.isfinite(part).all():
            raise ValueError("need finite scores for members and nonmembers on both sides")

    auc = auc_of
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        im, inn = rng.integers(0, len(am), len(am)), rng.integers(0, len(an), len(an))
        if paired:
            jm, jn = im, inn
        else:
            jm, jn = rng.integers(0, len(bm), len(bm)), rng.integers(0, len(bn), len(bn))
        diffs[i] = auc(am[im], an[inn]) - auc(bm[jm], bn[jn])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return float(auc(am, an) - auc(bm, bn)), float(lo), float(hi)
