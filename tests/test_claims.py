"""The verdict rules, each shown coming out all three ways, on synthetic scores."""
import math

import numpy as np
import pytest

from miakit import claims, metrics
from miakit.claims import Outcome


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
    assert claims.beats_chance("auc", est(0.7, 0.6, 0.8)).outcome is Outcome.REPRODUCED
    assert claims.beats_chance("auc", est(0.52, 0.45, 0.58)).outcome is Outcome.CONTRADICTED
    assert claims.beats_chance("auc", est(0.55, 0.45, 0.65)).outcome is Outcome.UNDECIDED


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
