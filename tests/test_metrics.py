import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from miakit.evidence import metrics


def brute_tpr_at_fpr(scores, positive, level):
    """Best TPR over all thresholds 'score >= thr' whose FPR <= level."""
    best = 0.0
    for thr in np.r_[np.inf, np.unique(scores)]:
        flagged = scores >= thr
        fpr = flagged[~positive].mean()
        if fpr <= level + 1e-12:
            best = max(best, flagged[positive].mean())
    return best


def test_hand_computed_case():
    members = np.array([0.9, 0.8, 0.35])
    nonmembers = np.array([0.7, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01, 0.0])
    r = metrics.evaluate_split(members, nonmembers)
    # pairs (m, n) with m > n: 0.9 and 0.8 beat all 10, 0.35 beats 9 -> 29 of 30
    assert r.auc == pytest.approx(29 / 30)
    # at FPR <= 10% (one nonmember may be flagged) threshold 0.7 flags 0.9, 0.8 -> TPR 2/3;
    # threshold 0.35 would flag 0.7 too: still FPR 0.1, TPR 1
    assert r.tpr_at_fpr[0.1] == pytest.approx(1.0)
    assert math.isnan(r.tpr_at_fpr[0.01])  # 10 nonmembers cannot resolve 1% FPR
    assert any("1%FPR needs >= 100 nonmembers" in n for n in r.notes)
    # ASR: threshold 0.35 -> TPR 1, FPR 0.1 -> balanced accuracy 0.95
    assert r.asr == pytest.approx(0.95)
    assert r.n_members == 3 and r.n_nonmembers == 10


def test_perfect_and_reversed_attacks():
    good = metrics.evaluate_split(np.arange(10, 20), np.arange(10))
    assert good.auc == 1.0 and good.tpr_at_fpr[0.1] == 1.0
    bad = metrics.evaluate_split(np.arange(10), np.arange(10, 20))
    assert bad.auc == 0.0 and bad.tpr_at_fpr[0.1] == 0.0


def test_against_sklearn_and_brute_force():
    rng = np.random.default_rng(0)
    is_member = rng.random(3000) < 0.3
    scores = rng.normal(size=3000) + 0.7 * is_member
    scores[:50] = np.round(scores[:50], 1)  # some ties
    r = metrics.evaluate(scores, is_member)
    assert r.auc == pytest.approx(roc_auc_score(is_member, scores))
    for level in (0.1, 0.01, 0.001):
        assert r.tpr_at_fpr[level] == pytest.approx(brute_tpr_at_fpr(scores, is_member, level))
    for level in (0.1, 0.01):
        # paper convention: nonmembers positive, score = loss = -member score
        assert r.paper_tpr_at_fpr[level] == pytest.approx(brute_tpr_at_fpr(-scores, ~is_member, level))
    assert math.isnan(r.paper_tpr_at_fpr[0.001])  # ~900 members cannot resolve 0.1% in that convention
    assert math.isnan(r.tpr_at_fpr[0.0001])  # ~2100 nonmembers cannot resolve 0.01%


def test_both_conventions_match_scikit_learn_curves_with_many_ties():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    is_member = rng.random(2500) < 0.4
    scores = rng.integers(0, 12, 2500) + 2.0 * is_member  # few distinct values: ties everywhere
    r = metrics.evaluate(scores, is_member)
    assert r.auc == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)
    pfpr, ptpr, _ = roc_curve(~is_member, -scores, drop_intermediate=False)  # the paper's convention, directly
    for level in (0.1, 0.01):
        assert r.paper_tpr_at_fpr[level] == pytest.approx(metrics.tpr_at_fpr(pfpr, ptpr, level, int(is_member.sum())))
        assert r.paper_tpr_at_fpr[level] == pytest.approx(brute_tpr_at_fpr(-scores, ~is_member, level))
        assert r.tpr_at_fpr[level] == pytest.approx(brute_tpr_at_fpr(scores, is_member, level))


def test_conventions_differ_at_low_fpr_but_not_in_auc():
    rng = np.random.default_rng(1)
    # members: a few very high scores (a real leak); nonmembers: plain noise
    members = np.r_[rng.normal(size=900), rng.normal(6, 0.1, size=100)]
    nonmembers = rng.normal(size=1000)
    r = metrics.evaluate_split(members, nonmembers)
    assert r.tpr_at_fpr[0.001] >= 0.1  # the 100 outliers are found
    assert r.paper_tpr_at_fpr[0.001] < 0.02  # detecting nonmembers finds nothing special


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="scores but"):
        metrics.evaluate([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="both members and nonmembers"):
        metrics.evaluate([1.0, 2.0], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate([1.0, np.nan], [True, False])


def test_estimate_interval_brackets_the_auc_and_is_seeded():
    rng = np.random.default_rng(2)
    members, nonmembers = rng.normal(size=200) + 1, rng.normal(size=200)
    e = metrics.estimate_split(members, nonmembers, n_boot=300)
    assert e.value == pytest.approx(metrics.evaluate_split(members, nonmembers).auc)
    assert e.low < e.value < e.high and e.high - e.low < 0.2 and e.se > 0
    assert metrics.estimate_split(members, nonmembers, n_boot=300) == e  # seeded


def test_bootstrap_resamples_members_and_nonmembers_separately():
    """Pooling members and nonmembers before resampling would change how many of each a
    resample holds: every resample must keep exactly the original counts."""
    arm = metrics.Arm(np.arange(7.0), np.arange(50.0))
    counts = metrics.estimate(arm, statistic=lambda m, n: len(m) * 1000 + len(n), n_boot=200)
    assert counts.low == counts.high == 7 * 1000 + 50


def test_tpr_of_equals_the_roc_rule():
    rng = np.random.default_rng(4)
    for trial in range(20):
        m = np.round(rng.normal(1, 1, 60), 1)  # ties
        n = np.round(rng.normal(0, 1, 400), 1)
        r = metrics.evaluate_split(m, n)
        for level in (0.1, 0.01):
            assert metrics.tpr_of(m, n, level) == pytest.approx(r.tpr_at_fpr[level]), (trial, level)
    assert math.isnan(metrics.tpr_of(m, n, 0.001))  # 400 nonmembers cannot resolve 0.1%


def test_tpr_estimate_has_an_interval():
    rng = np.random.default_rng(5)
    e = metrics.estimate_split(rng.normal(2, 1, 100), rng.normal(0, 1, 500), statistic=0.01, n_boot=200)
    assert 0 <= e.low <= e.value <= e.high <= 1 and e.high > e.low


def test_auc_of_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    m, n = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 70).astype(float)  # many ties
    assert metrics.auc_of(m, n) == pytest.approx(roc_auc_score(np.r_[np.ones(40), np.zeros(70)], np.r_[m, n]))


def test_difference_paired_and_unpaired():
    rng = np.random.default_rng(0)
    strong = metrics.Arm(rng.normal(2, 1, 200), rng.normal(0, 1, 300))
    weak = metrics.Arm(strong.members * 0.1 + rng.normal(0, 1, 200), strong.nonmembers * 0.1 + rng.normal(0, 1, 300))
    d = metrics.estimate_difference(strong, weak, paired=True, n_boot=300)
    assert d.low < d.value < d.high and d.low > 0.2  # a large, clear effect
    same = metrics.estimate_difference(strong, strong, paired=True, n_boot=100)
    assert same.value == same.low == same.high == 0  # paired: the same scores cancel in every resample
    apart = metrics.estimate_difference(strong, strong, paired=False, n_boot=300)
    assert apart.value == 0 and apart.low < 0 < apart.high  # unpaired: independent resamples spread around zero
    with pytest.raises(ValueError, match="paired"):
        metrics.estimate_difference(metrics.Arm(strong.members[0, :10], strong.nonmembers[0]), strong, paired=True)


def test_seed_spread_widens_the_interval():
    """Three seeds whose AUCs differ a lot: the interval over images and seeds must be wider than
    any one seed's image-only interval, and the per-seed values are kept."""
    rng = np.random.default_rng(6)
    shifts = (0.2, 1.0, 1.8)
    arm = metrics.Arm.of((rng.normal(s, 1, 300), rng.normal(0, 1, 300)) for s in shifts)
    both = metrics.estimate(arm, n_boot=400)
    one = metrics.estimate(metrics.Arm(arm.members[1], arm.nonmembers[1]), n_boot=400)
    assert len(both.per_seed) == 3 and both.per_seed[0] < both.per_seed[1] < both.per_seed[2]
    assert both.value == pytest.approx(np.mean(both.per_seed))
    assert both.high - both.low > 2 * (one.high - one.low)
    assert both.n_seeds == 3


def test_arm_rejects_mismatched_seeds():
    with pytest.raises(ValueError, match="same members"):
        metrics.Arm.of([(np.zeros(3), np.zeros(4)), (np.zeros(2), np.zeros(4))])
    with pytest.raises(ValueError, match="NaN"):
        metrics.Arm(np.array([1.0, np.nan]), np.zeros(3))


def test_an_unresolvable_tpr_is_said_in_words_not_printed_as_nan():
    """500 nonmembers cannot show a 0.1% FPR: the table says so instead of "nan [nan, nan]"."""
    rng = np.random.default_rng(0)
    m, n = rng.normal(1, 1, 50), rng.normal(0, 1, 500)
    assert metrics.estimate_split(m, n, statistic=0.001, n_boot=20).text() == metrics.UNRESOLVABLE
    resolved = metrics.estimate_split(m, n, statistic=0.01, n_boot=20).text()
    assert "nan" not in resolved and resolved.count("[") == 1


def test_every_results_table_spells_its_estimate_columns_one_way():
    """``estimate_row`` is the one builder of the AUC / TPR columns: its spelling, its words for a
    TPR no threshold can show, and the counts the AUC rests on."""
    from miakit.evidence import metrics as m

    auc = m.Estimate(0.8, 0.7, 0.9, 0.05, n_members=50, n_nonmembers=500)
    unresolvable = m.Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 50, 500)
    row = m.estimate_row(auc, {0.01: auc, 0.001: unresolvable})
    assert row == {"AUC [95%]": "0.800 [0.700, 0.900]", "TPR@1%FPR [95%]": "0.800 [0.700, 0.900]",
                   "TPR@0.1%FPR [95%]": m.UNRESOLVABLE, "members scored": 50, "nonmembers scored": 500}
    assert list(m.estimate_row(auc, counts=False)) == ["AUC [95%]"]


def test_a_table_leaves_out_the_columns_no_row_can_measure():
    """50 test nonmembers resolve TPR at 10% FPR, not below 1/50 = 2%: the 1%, 0.1%
    and 0.01% columns would be NaN in every row (chapter 02 rendered 180 NaN cells) and are left
    out, named for the caption; a NaN in a column other rows fill reads as not measurable."""
    import pandas as pd

    rng = np.random.default_rng(0)
    small = metrics.evaluate_split(rng.normal(1, 1, 50), rng.normal(0, 1, 50))
    large = metrics.evaluate_split(rng.normal(1, 1, 50), rng.normal(0, 1, 500))
    table = metrics.measurable(pd.DataFrame({"a": small.row(), "b": small.row()}).T)
    assert "TPR@10%FPR" in table.columns and "TPR@1%FPR" not in table.columns
    assert {"TPR@1%FPR", "TPR@0.1%FPR", "TPR@0.01%FPR"} <= set(table.attrs["unmeasurable"])
    assert not table.isna().any().any()
    mixed = metrics.measurable(pd.DataFrame({"small": small.row(), "large": large.row()}).T)
    assert mixed.loc["small", "TPR@1%FPR"] == metrics.UNRESOLVABLE and 0 <= mixed.loc["large", "TPR@1%FPR"] <= 1
    assert "TPR@0.01%FPR" not in mixed.columns
    # a blank cell says what it is: too few members under the paper's convention, or not a TPR at all
    other = metrics.measurable(pd.DataFrame({"paper TPR@1%FPR": [0.2, np.nan], "noise multiplier": [1.1, np.nan]}))
    assert other.loc[1, "paper TPR@1%FPR"] == "not measurable: too few test members"
    assert other.loc[1, "noise multiplier"] == metrics.NOT_APPLICABLE


def test_a_per_family_table_turns_its_families_into_columns():
    from miakit.chapters import loss_and_likelihood

    rows = {"ddpm": {"AUC": 0.912345, "TPR@0.01%FPR": float("nan"), "step": "t = 75"},
            "smld": {"AUC": 0.5, "TPR@0.01%FPR": float("nan"), "step": "t = 275"}}
    table = loss_and_likelihood.families_as_columns(rows)
    assert list(table.columns) == ["ddpm", "smld"] and list(table.index) == ["AUC", "step"]
    assert table.loc["AUC", "ddpm"] == 0.9123 and table.attrs["unmeasurable"] == ["TPR@0.01%FPR"]


def test_clopper_pearson_bounds_solve_the_binomial_tail_equations():
    """Exact interval by its definition: at the upper bound P(X <= k) = alpha/2, at the lower
    bound P(X >= k) = alpha/2 (X ~ Binomial(n, p)); at k = 0 the upper bound is 1 - (alpha/2)^(1/n)
    and at k = n the lower bound is (alpha/2)^(1/n)."""
    from scipy.stats import binom

    n = 175
    assert metrics.clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n)))
    assert metrics.clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n)), 1.0)
    for k in (1, 7, 90, 174):
        low, high = metrics.clopper_pearson(k, n)
        assert binom.cdf(k, n, high) == pytest.approx(0.025, abs=1e-9)
        assert binom.sf(k - 1, n, low) == pytest.approx(0.025, abs=1e-9)
        assert low < k / n < high


def test_a_tpr_of_zero_or_of_every_member_keeps_the_exact_binomial_width():
    """Members far below every nonmember: each bootstrap replicate also reads TPR 0, so the
    percentile interval alone is [0, 0], as if 175 members could not hold a single one above the
    threshold; the interval must reach the exact upper bound for 0 of 175. Mirrored: TPR 1."""
    rng = np.random.default_rng(3)
    members, nonmembers = rng.normal(-50, 1, 175), rng.normal(0, 1, 5600)
    e = metrics.estimate_split(members, nonmembers, statistic=0.001, n_boot=200)
    assert e.value == 0 and e.low == 0
    assert e.high == pytest.approx(1 - 0.025 ** (1 / 175))  # 0.0209
    up = metrics.estimate_split(-members, nonmembers, statistic=0.01, n_boot=200)
    assert up.value == 1 and up.high == 1 and up.low == pytest.approx(0.025 ** (1 / 175))
    auc = metrics.estimate_split(-members, nonmembers, n_boot=200)  # an AUC is left to the bootstrap
    assert (auc.value, auc.low, auc.high) == (1.0, 1.0, 1.0)


def test_a_tpr_interval_covers_the_members_count_above_the_threshold_on_every_seed():
    """k behind a TPR over seeds that score the same images: the mean over seeds of the members
    above each seed's threshold (counted here by the brute-force ROC rule), and the interval
    contains the exact interval of that count."""
    rng = np.random.default_rng(8)
    members, nonmembers = rng.normal(1, 1, (2, 120)), rng.normal(0, 1, (2, 1000))
    arm = metrics.Arm(members, nonmembers)
    labels = np.r_[np.ones(120, bool), np.zeros(1000, bool)]
    counts = [120 * brute_tpr_at_fpr(np.r_[m, n], labels, 0.01) for m, n in zip(members, nonmembers)]
    assert metrics.members_above(arm, 0.01) == (pytest.approx(np.mean(counts)), 120)
    e = metrics.estimate(arm, 0.01, n_boot=200)
    low, high = metrics.clopper_pearson(np.mean(counts), 120)
    assert e.low <= low and e.high >= high and e.low <= e.value <= e.high
