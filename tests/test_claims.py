"""The verdict rules, each shown coming out all three ways, on synthetic scores."""
import math
from collections import Counter
from functools import lru_cache, partial
from statistics import NormalDist

import numpy as np
import pytest

from miakit.evidence import claims, metrics
from miakit.chapters import loss_and_likelihood
from miakit.evidence.claims import Outcome


def arm(shift: float, n_members: int, n_nonmembers: int, seed: int = 0) -> metrics.Arm:
    """Gaussian scores whose members sit ``shift`` above the nonmembers (AUC = Phi(shift / sqrt 2))."""
    rng = np.random.default_rng(seed)
    return metrics.Arm(rng.normal(shift, 1, n_members), rng.normal(0, 1, n_nonmembers))


def est(value, low, high, se=0.05, n=100):
    return metrics.Estimate(value, low, high, se, n, 10 * n)


def test_greater_three_ways_on_intervals():
    assert claims.greater("d", est(0.1, 0.02, 0.2)).outcome is Outcome.REPRODUCED
    assert claims.greater("d", est(-0.1, -0.2, -0.01)).outcome is Outcome.CONTRADICTED
    undecided = claims.greater("d", est(0.05, -0.01, 0.11))
    assert undecided.outcome is Outcome.UNDECIDED and undecided.gap == pytest.approx(0.05)


def test_within_three_ways_on_intervals():
    assert claims.within("auc", est(0.52, 0.45, 0.58)).outcome is Outcome.REPRODUCED
    assert claims.within("auc", est(0.75, 0.65, 0.85)).outcome is Outcome.CONTRADICTED
    assert claims.within("auc", est(0.30, 0.2, 0.38)).outcome is Outcome.CONTRADICTED
    # the old rule's trap: an interval that contains 0.5 but reaches past 0.6 decides nothing
    assert claims.within("auc", est(0.587, 0.473, 0.693)).outcome is Outcome.UNDECIDED


def test_beats_chance_three_ways_on_intervals():
    assert claims.beats_chance("auc", est(0.7, 0.62, 0.8)).outcome is Outcome.REPRODUCED
    assert claims.beats_chance("auc", est(0.52, 0.45, 0.58)).outcome is Outcome.CONTRADICTED
    assert claims.beats_chance("auc", est(0.62, 0.55, 0.69)).outcome is Outcome.UNDECIDED
    # above 0.5 but inside the chance band: at chance, so it does not beat chance (the old rule
    # called [0.52, 0.58] both "beats chance" and "at chance")
    inside = est(0.55, 0.52, 0.58)
    assert claims.beats_chance("auc", inside).outcome is Outcome.CONTRADICTED
    assert claims.within("auc", inside).outcome is Outcome.REPRODUCED


def test_beats_chance_has_one_threshold_in_its_outcome_and_its_text():
    threshold = claims.CHANCE + claims.DELTA
    assert f"above {threshold:g}" in claims.BEATS_CHANCE_TEXT
    assert f"above {threshold:g}" in loss_and_likelihood.C1_STATEMENT
    check = claims.beats_chance("auc", est(0.6, 0.55, 0.65))
    assert f"{claims.DELTA:g}" in check.rule and "below" not in check.rule  # no second threshold
    assert f"above {threshold:g}" in claims.rules_text()
    for low in np.linspace(0.3, 0.8, 51):  # every interval: never both, and beats = contradicted from above
        e = est(low + 0.05, low, low + 0.1)
        beats, at = claims.beats_chance("a", e).outcome, claims.within("a", e).outcome
        assert not (beats is Outcome.REPRODUCED and at is Outcome.REPRODUCED)
        assert (beats is Outcome.REPRODUCED) == (at is Outcome.CONTRADICTED and e.low > 0.5)


def test_margin_dependent_checks_carry_their_outcome_at_every_margin():
    e = est(0.53, 0.47, 0.59)
    check = claims.within("auc", e)
    assert dict(check.at_margins) == {0.05: Outcome.UNDECIDED, 0.1: Outcome.REPRODUCED}
    assert check.outcome is Outcome.REPRODUCED and "at margin 0.05: UNDECIDED" in check.text()
    assert claims.beats_chance("auc", est(0.6, 0.57, 0.63)).outcome_at(0.05) is Outcome.REPRODUCED
    difference = claims.greater("d", est(0.1, 0.02, 0.2))
    assert not difference.margin_dependent and difference.outcome_at(0.05) is Outcome.REPRODUCED
    row = claims.Verdict("X", "s", (check, difference)).row()
    assert row["verdict"] == "REPRODUCED" and row["verdict at margin 0.05"] == "UNDECIDED"
    assert claims.Verdict("Y", "s", (difference,)).row()["verdict at margin 0.05"] == ""


def test_rules_on_synthetic_scores_come_out_all_three_ways():
    big_effect = metrics.estimate_difference(arm(1.5, 300, 300), arm(0.0, 300, 300, seed=1), paired=False)
    reversed_effect = metrics.estimate_difference(arm(0.0, 300, 300), arm(1.5, 300, 300, seed=1), paired=False)
    small_sample = metrics.estimate_difference(arm(0.3, 15, 15), arm(0.0, 15, 15, seed=1), paired=False)
    assert claims.greater("d", big_effect).outcome is Outcome.REPRODUCED
    assert claims.greater("d", reversed_effect).outcome is Outcome.CONTRADICTED
    assert claims.greater("d", small_sample).outcome is Outcome.UNDECIDED

    at_chance = metrics.estimate(arm(0.0, 2000, 2000))
    leaking = metrics.estimate(arm(1.5, 2000, 2000))
    few = metrics.estimate(arm(0.0, 25, 25))
    assert claims.within("auc", at_chance).outcome is Outcome.REPRODUCED
    assert claims.within("auc", leaking).outcome is Outcome.CONTRADICTED
    assert claims.within("auc", few).outcome is Outcome.UNDECIDED


# ---------------------------------------------------------- simulated scores at the cpu profile's sizes
# The cpu profile splits 100 members and 1000 nonmembers into a validation and a test part of
# 50 + 500 each. Scores for a true AUC a: members ~ N(d, 1), nonmembers ~ N(0, 1), d = sqrt(2) Phi^-1(a).
WHOLE_SPLIT, TEST_PART = (100, 1000), (50, 500)
N_BOOT = 200  # resamples per simulated interval (the book uses metrics.N_BOOT)


def shift_for(auc: float) -> float:
    return math.sqrt(2) * NormalDist().inv_cdf(auc)


@lru_cache(maxsize=None)
def simulated_estimates(auc: float, sizes: tuple[int, int], n_sets: int, seed: int = 0) -> tuple:
    """AUC estimates (``metrics.estimate_split``) of ``n_sets`` simulated splits at true AUC ``auc``."""
    rng = np.random.default_rng(seed)
    d, (n_members, n_nonmembers) = shift_for(auc), sizes
    return tuple(metrics.estimate_split(rng.normal(d, 1, n_members), rng.normal(0, 1, n_nonmembers),
                                        n_boot=N_BOOT, seed=i) for i in range(n_sets))


def shares(rule, estimates) -> dict:
    """Share of the estimates on which ``rule`` comes out each way."""
    counts = Counter(rule("auc", e).outcome for e in estimates)
    return {o: counts[o] / len(estimates) for o in Outcome}


def test_at_chance_on_simulated_scores_at_cpu_sizes():
    """A true AUC of exactly 0.5 on the whole split (C2's ends, the blind baselines) comes out
    at chance at least 80% of the time; on the test part alone it mostly cannot, which is why
    no at-chance claim is judged on a test part. A leaking attack is contradicted, one at the
    band's edge undecided."""
    exact = simulated_estimates(0.5, WHOLE_SPLIT, 150)
    assert shares(claims.within, exact)[Outcome.REPRODUCED] >= 0.8
    assert shares(claims.within, exact)[Outcome.CONTRADICTED] == 0
    # the normal approximation the book quotes agrees with the simulation
    assert abs(claims.chance_power(*WHOLE_SPLIT) - shares(claims.within, exact)[Outcome.REPRODUCED]) < 0.06
    assert claims.chance_power(*WHOLE_SPLIT, delta=0.05) == 0 and claims.chance_power(*TEST_PART) < 0.4
    # the narrower band of 0.05 is never reached at these sizes: the interval is about 0.12 wide
    assert shares(partial(claims.within, delta=0.05), exact)[Outcome.REPRODUCED] == 0
    assert all(dict(claims.within("auc", e).at_margins)[0.05] is not Outcome.REPRODUCED for e in exact)
    assert shares(claims.within, simulated_estimates(0.5, TEST_PART, 40, seed=1))[Outcome.REPRODUCED] < 0.5
    assert shares(claims.within, simulated_estimates(0.75, WHOLE_SPLIT, 10, seed=2))[Outcome.CONTRADICTED] == 1
    assert shares(claims.within, simulated_estimates(0.6, WHOLE_SPLIT, 10, seed=3))[Outcome.UNDECIDED] >= 0.8


def test_beats_chance_on_simulated_scores_at_cpu_sizes():
    """C1's sample (the test part, 50 + 500). A true AUC of 0.55 lies inside the chance band, so
    "beats chance (AUC above 0.6)" must rarely come out REPRODUCED; CONTRADICTED and UNDECIDED
    are both honest there. The old rule (REPRODUCED above 0.5, CONTRADICTED below 0.6) said
    REPRODUCED about as often as CONTRADICTED."""
    assert shares(claims.beats_chance, simulated_estimates(0.8, TEST_PART, 10))[Outcome.REPRODUCED] == 1
    assert shares(claims.beats_chance, simulated_estimates(0.45, TEST_PART, 10, seed=1))[Outcome.CONTRADICTED] >= 0.9
    assert shares(claims.beats_chance, simulated_estimates(0.6, TEST_PART, 10, seed=2))[Outcome.UNDECIDED] >= 0.8
    near = simulated_estimates(0.55, TEST_PART, 150, seed=3)
    new = shares(claims.beats_chance, near)
    assert new[Outcome.REPRODUCED] <= 0.025 and new[Outcome.CONTRADICTED] >= 0.1
    old_reproduced = np.mean([e.low > 0.5 for e in near])  # what the old "above 0.5" half of the rule said
    assert old_reproduced >= 0.1
    # at true chance it never says REPRODUCED where "at chance" does (nor anywhere here)
    assert shares(claims.beats_chance, simulated_estimates(0.5, WHOLE_SPLIT, 150))[Outcome.REPRODUCED] == 0


def test_greater_on_simulated_scores_at_cpu_sizes():
    """A > B on paired arms of the test part (C2: two steps, the same 50 + 500 images)."""
    def difference(auc_a, auc_b, seed=0):
        rng = np.random.default_rng(seed)
        # each score: the image's own part, shared by both steps, plus the step's noise (variance 1 in all)
        members, nonmembers = rng.normal(0, 0.5 ** 0.5, 50), rng.normal(0, 0.5 ** 0.5, 500)

        def at_step(auc):
            return metrics.Arm(members + shift_for(auc) + rng.normal(0, 0.5 ** 0.5, 50),
                               nonmembers + rng.normal(0, 0.5 ** 0.5, 500))
        a, b = at_step(auc_a), at_step(auc_b)
        return metrics.estimate_difference(a, b, paired=True, n_boot=N_BOOT)

    assert claims.greater("d", difference(0.9, 0.5)).outcome is Outcome.REPRODUCED
    assert claims.greater("d", difference(0.5, 0.9, seed=1)).outcome is Outcome.CONTRADICTED
    undecided = claims.greater("d", difference(0.52, 0.5, seed=2))
    assert undecided.outcome is Outcome.UNDECIDED and "x the sample" in claims.Verdict("C", "s", (undecided,)).deciding()


def test_a_true_auc_of_065_on_25_images_is_never_called_at_chance():
    """The issue's simulation: at a true AUC of 0.65 with 25 + 25 images the old rule ("the
    interval contains 0.5") called chance in most runs; the equivalence rule never does."""
    shift = math.sqrt(2) * 0.3853  # Phi(0.3853) = 0.65
    old_rule, new_rule = 0, 0
    for seed in range(30):
        e = metrics.estimate(arm(shift, 25, 25, seed), n_boot=300)
        old_rule += e.low <= 0.5 <= e.high
        new_rule += claims.within("auc", e).outcome is Outcome.REPRODUCED
    assert old_rule >= 10  # the old rule would have called chance often
    assert new_rule == 0


def test_undecided_states_the_sample_that_would_decide_it_and_that_sample_does():
    small = metrics.estimate_difference(arm(0.4, 40, 40), arm(0.0, 40, 40, seed=1), paired=False)
    check = claims.greater("d", small)
    assert check.outcome is Outcome.UNDECIDED
    verdict = claims.Verdict("Cx", "a leaks more than b", (check,))
    factor = verdict.factor()
    assert 1 < factor < 50
    assert f"{math.ceil(factor * 40)} members" in verdict.deciding()
    grown = math.ceil(2 * factor * 40)  # twice the stated sample: decided in the run below
    bigger = metrics.estimate_difference(arm(0.4, grown, grown, 2), arm(0.0, grown, grown, 3), paired=False)
    assert claims.greater("d", bigger).outcome is Outcome.REPRODUCED


def tie_at_the_ceiling(n_members: int = 50, n_nonmembers: int = 500):
    """Two paired arms on the same images, both separating members perfectly but for one member
    of the second, which sits just below one nonmember: AUC 1.000 against 0.99996."""
    rng = np.random.default_rng(0)
    m, n = rng.normal(10, 1, n_members), rng.normal(0, 1, n_nonmembers)
    m2 = m.copy()
    m2[0] = n.max() - 1e-6
    return metrics.estimate_difference(metrics.Arm(m, n), metrics.Arm(m2, n), paired=True, n_boot=200)


def test_no_sample_decides_a_tie_at_auc_one():
    """The issue's "32x the sample: 1603 members" for AUC 1.000 against 1.000: the resamples tie
    exactly at 0 (most leave the one misplaced member out), which no number of images lifts."""
    tie = tie_at_the_ceiling()
    assert tie.value > 0 and tie.low == 0.0
    check = claims.greater("AUC(a) - AUC(b)", tie)
    assert check.outcome is Outcome.UNDECIDED and math.isinf(check.factor()) and check.undecidable()
    deciding = claims.Verdict("Cx", "s", (check,)).deciding()
    assert "no sample size" in deciding and "x the sample" not in deciding
    both_perfect = metrics.estimate_difference(metrics.Arm(np.ones(50), np.zeros(500)),
                                               metrics.Arm(np.ones(50), np.zeros(500)), paired=True, n_boot=50)
    degenerate = claims.greater("d", both_perfect)
    assert both_perfect.se == 0 and degenerate.outcome is Outcome.UNDECIDED
    assert "no sample size" in claims.Verdict("Cy", "s", (degenerate,)).deciding()


def test_no_member_count_is_stated_where_the_arms_are_defined_by_it():
    """A C3-like check (AUC of a 40-member target against another's, 3 training seeds each,
    every member scored): the members are the arms' definition, so "what would decide it"
    names what can grow and states no sample."""
    rng = np.random.default_rng(0)

    def seeds(shift):
        return metrics.Arm.of((rng.normal(shift, 1, 40), rng.normal(0, 1, 40)) for _ in range(3))
    small = metrics.estimate_difference(seeds(0.4), seeds(0.0), paired=False, n_boot=200)
    check = claims.greater("AUC(40 members) - AUC(80 members)", small, grows=claims.EVERY_MEMBER_SCORED)
    assert check.outcome is Outcome.UNDECIDED and math.isinf(check.factor())
    deciding = claims.Verdict("C3-like", "s", (check,)).deciding()
    assert "already scored" in deciding and "nonmembers" in deciding and "training seeds" in deciding
    assert "x the sample" not in deciding and "members and" not in deciding


def test_where_every_member_is_scored_only_the_nonmembers_grow():
    """One target's whole split (C2's ends, the IID check): the members' share of the variance,
    n / (m + n), stays, so a check close to deciding gets a nonmember count, and that count
    brings the standard error down to the gap (the normal approximation); one farther off gets none."""
    near = claims.within("auc", est(0.54, 0.48, 0.605, se=0.031, n=100), grows=claims.EVERY_MEMBER_SCORED)
    assert near.outcome is Outcome.UNDECIDED
    f = near.factor()
    n_nonmembers = f * 1000
    share = 1000 / 1100
    se_after = 0.031 * math.sqrt(share + (1 - share) * 1000 / n_nonmembers)
    assert se_after == pytest.approx(near.gap / claims.Z)
    deciding = claims.Verdict("C", "s", (near,)).deciding()
    assert f"{math.ceil(n_nonmembers)} nonmembers with the same 100 members" in deciding
    far = claims.within("auc", est(0.57, 0.51, 0.63, se=0.031, n=100), grows=claims.EVERY_MEMBER_SCORED)
    assert far.outcome is Outcome.UNDECIDED and math.isinf(far.factor())
    assert "no sample size" in claims.Verdict("C", "s", (far,)).deciding()
    assert "at most about 5%" in far.undecidable()  # 1 - sqrt(1000 / 1100)


def test_no_sample_decides_an_effect_on_the_boundary():
    check = claims.greater("d", est(0.0, -0.1, 0.1))
    assert check.outcome is Outcome.UNDECIDED and math.isinf(check.factor())
    assert "no sample size" in claims.Verdict("Cx", "s", (check,)).deciding()


def test_combination_and_table():
    yes = claims.greater("a", est(0.1, 0.02, 0.2))
    no = claims.greater("b", est(-0.1, -0.2, -0.01))
    maybe = claims.greater("c", est(0.05, -0.01, 0.11))
    assert claims.Verdict("A", "s", (yes, yes)).outcome is Outcome.REPRODUCED
    assert claims.Verdict("B", "s", (yes, maybe)).outcome is Outcome.UNDECIDED
    assert claims.Verdict("C", "s", (yes, maybe, no)).outcome is Outcome.CONTRADICTED
    empty = claims.Verdict("D", "s", (), note="not measured: no labels")
    assert empty.outcome is Outcome.UNDECIDED and "not measured" in empty.deciding()
    verdicts = [claims.Verdict("C9 (x)", "s", (yes,), "notebooks/04_factors#c3"), claims.Verdict("C8", "t", (maybe,))]
    table = claims.table(verdicts)
    assert list(table.data["verdict"]) == ["REPRODUCED", "UNDECIDED"]
    html = table.to_html()
    assert 'href="../notebooks/04_factors.html#c3"' in html and "REPRODUCED" in html
    assert claims.glue_values(verdicts) == {"verdict_C9_x": "REPRODUCED", "verdict_C8": "UNDECIDED"}


def test_a_defense_claim_on_simulated_scores_at_cpu_sizes():
    """Chapter 07's rule, "the defense lowers the lead attack's AUC by more than 0.1 against no
    defense", on its cpu sample: both arms score the same 50 + 500 test images with the same 3
    seeds (paired), each seed's true AUC spread by 0.03, no defense at a true AUC of 0.75 (chapter
    05's non-private arm leaks about 0.7-0.75 at cpu). A defense that changes nothing is
    contradicted, one that takes off exactly 0.1 is left undecided (almost never called a success),
    one that takes off 0.25 is called a success."""
    def paired_drop(drop: float, seed: int, n_seeds: int = 3, spread: float = 0.03):
        rng = np.random.default_rng(seed)
        # each score: the image's own part (shared by both arms and every seed), plus the training's noise
        members, nonmembers = rng.normal(0, 0.5 ** 0.5, 50), rng.normal(0, 0.5 ** 0.5, 500)

        def arm(auc):
            shifts = [shift_for(auc + rng.normal(0, spread)) for _ in range(n_seeds)]
            return metrics.Arm(np.array([members + d + rng.normal(0, 0.5 ** 0.5, 50) for d in shifts]),
                               np.array([nonmembers + rng.normal(0, 0.5 ** 0.5, 500) for _ in shifts]))
        return metrics.estimate_difference(arm(0.75), arm(0.75 - drop), paired=True, n_boot=N_BOOT)

    def outcomes(drop, n_sets=30):
        return shares(lambda q, e: claims.greater(q, e, than=0.1), [paired_drop(drop, s) for s in range(n_sets)])

    assert outcomes(0.0)[Outcome.CONTRADICTED] >= 0.8
    at_threshold = outcomes(0.1)
    assert at_threshold[Outcome.UNDECIDED] >= 0.9 and at_threshold[Outcome.REPRODUCED] <= 0.05
    assert outcomes(0.25)[Outcome.REPRODUCED] >= 0.9


def test_a_finding_counts_its_group_s_verdicts_and_says_when_there_are_none():
    up, down = arm(2.0, 50, 50), arm(-2.0, 50, 50, seed=1)
    verdicts = [claims.Verdict(f"C1 loss ({f})", "s", (claims.beats_chance("auc", metrics.estimate(a)),))
                for f, a in (("ddpm", up), ("smld", down))]
    verdicts.append(claims.Verdict("C2 t -> 0 (ddpm)", "s", (claims.beats_chance("auc", metrics.estimate(up)),)))
    assert claims.finding(verdicts, "C1", "attacks beat chance") == \
        "C1 (attacks beat chance): of 2 verdicts, 1 REPRODUCED, 1 CONTRADICTED."
    assert claims.finding(verdicts, "D", "defenses help") == "D (defenses help): not judged in this build."
    assert claims.group("IID split") == "IID" and claims.group("C2 t -> 0 (ddpm)") == "C2"


def _kept_verdicts():
    e = metrics.Estimate
    return [claims.Verdict("C2 (t -> 0, ddpm)", "the loss attack is near chance", (
                claims.within("AUC", e(0.52, 0.47, 0.57, 0.025, 50, 500, 3, (0.5, 0.52, 0.54))),
                claims.beats_chance("AUC", e(0.9, 0.85, 0.95, 0.02, 50, 500)),
                claims.greater("AUC(50) - AUC(200)", e(0.0, 0.0, 0.0, 0.0, 50, 500, 1, (),
                                                       ("generated images", "reference images")), grows=("nonmembers",)),
                claims.greater("TPR", e(math.nan, math.nan, math.nan, math.inf, 50, 500))),
            "notebooks/04_factors.html#c2", note="two of four measured"),
            claims.Verdict("C5 utility", "worse samples", (), note="not measured: no labels")]


def test_verdicts_come_back_from_json_as_they_were():
    """The claims page reads back the verdicts the chapters kept (``overview.remember``): every
    field, outcome, margin and interval of a verdict survives JSON text, NaN and infinity included."""
    import json

    kept = _kept_verdicts()
    back = claims.from_json(json.loads(json.dumps(claims.to_json(kept))))
    assert repr(back) == repr(kept)
    assert [v.outcome for v in back] == [v.outcome for v in kept] and back[0].evidence() == kept[0].evidence()
    assert back[0].checks[0].outcome_at(0.05) is kept[0].checks[0].outcome_at(0.05)
    assert back[0].deciding() == kept[0].deciding() and back[0].factor() == kept[0].factor()


def test_a_chapter_s_kept_verdicts_are_read_only_under_the_same_settings_data_and_code(tmp_path, monkeypatch):
    from miakit.chapters import overview
    from miakit.core import config

    settings = config.resolve("smoke", runs_dir=str(tmp_path))
    assert overview.remembered(settings, "04") is None
    overview.remember(settings, "04", _kept_verdicts())
    assert repr(overview.remembered(settings, "04")) == repr(_kept_verdicts())
    assert overview.remembered(settings, "05") is None  # another chapter
    assert overview.remembered(config.resolve("smoke", runs_dir=str(tmp_path), n_seeds=3), "04") is None
    monkeypatch.setattr(overview, "code_digest", lambda: "another version")
    assert overview.remembered(settings, "04") is None
