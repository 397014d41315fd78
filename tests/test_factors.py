"""The factor studies of chapter 04 and their verdicts: each claim's rule shown coming out the
paper's way, the other way and undecided, on synthetic scores; the studies on smoke targets."""
import math

import numpy as np
import pytest

from miakit.evidence import claims, metrics
from miakit.core import config
from miakit.chapters import factors, loss_and_likelihood
from miakit.training import train
from miakit.evidence.claims import Outcome


def synthetic_study(separation_per_step, n_members=60, n_nonmembers=120, seed=0):
    """A loss-attack study whose member scores exceed the nonmembers' by the given shift per step."""
    rng = np.random.default_rng(seed)
    shift = np.asarray(separation_per_step, dtype=float)
    scores = {}
    for part, n, member in (("members_val", n_members, True), ("nonmembers_val", n_nonmembers, False),
                            ("members_test", n_members, True), ("nonmembers_test", n_nonmembers, False)):
        scores[part] = rng.normal(size=(n, len(shift))) + (shift if member else 0.0)
    return loss_and_likelihood.LossAttackStudy.from_scores(np.arange(len(shift)) * 100, scores)


def test_c2_reproduced_when_only_an_intermediate_step_separates():
    study = factors.step_study({"a": synthetic_study([0, 0.2, 2.0, 0.3, 0], 200, 400),
                                "b": synthetic_study([0, 1.5, 0.5, 0, 0], 200, 400, seed=1)})
    c2, *ends = study.verdicts()
    assert c2.claim == "C2" and c2.outcome is Outcome.REPRODUCED
    assert [v.claim for v in ends] == ["C2 t -> 0 (a)", "C2 t -> 0 (b)", "C2 t -> T (a)", "C2 t -> T (b)"]
    assert all(v.outcome is Outcome.REPRODUCED for v in ends)  # 400 + 800 images: the ends are shown at chance
    assert set(study.table().index) == {"a", "b"}


def test_c2_contradicted_when_an_end_leaks_more_and_undecided_when_tied():
    c2, first, last = factors.step_study({"a": synthetic_study([2.5, 0.2, 1.0, 0.3, 0], 200, 400)}).verdicts()
    assert c2.outcome is Outcome.CONTRADICTED and first.outcome is Outcome.CONTRADICTED
    assert first.claim == "C2 t -> 0 (a)" and last.claim == "C2 t -> T (a)"
    # a small interior advantage on 20 test members: the data cannot decide, and say how many would
    c2, *_ = factors.step_study({"a": synthetic_study([0.0, 0.4, 0.0], 20, 20, seed=3)}).verdicts()
    assert c2.outcome is Outcome.UNDECIDED and "members" in c2.deciding()


def test_c2_ends_on_the_whole_split_at_cpu_sizes_three_ways():
    """The cpu profile's split: 50 + 500 images per part, 100 + 1000 in all. Each end is judged
    on the whole split (nothing is chosen at a fixed step), named by noise level, labelled with
    its step, and shown at both margins."""
    at_chance, leaking, edge = 0.0, math.sqrt(2) * 1.0364, math.sqrt(2) * 0.2533  # AUC 0.5, 0.85, 0.6
    study = factors.step_study({"a": synthetic_study([at_chance, 1.5, leaking], 50, 500, seed=5),
                                "b": synthetic_study([edge, 1.5, at_chance], 50, 500, seed=6)})
    verdicts = {v.claim: v for v in study.verdicts()}
    first_a = verdicts["C2 t -> 0 (a)"]
    e = first_a.checks[0].estimate
    assert (e.n_members, e.n_nonmembers) == (100, 1000)
    assert loss_and_likelihood.step_label(0) in first_a.checks[0].quantity and "least noise" in first_a.statement
    assert first_a.outcome is Outcome.REPRODUCED and first_a.outcome_at(0.05) is not Outcome.REPRODUCED
    assert verdicts["C2 t -> T (a)"].outcome is Outcome.CONTRADICTED
    edge = verdicts["C2 t -> 0 (b)"]
    assert edge.outcome is Outcome.UNDECIDED
    # every member of the target is scored already: only nonmembers can grow, never "Nx the sample"
    assert "x the sample" not in edge.deciding() and (
        "with the same 100 members" in edge.deciding() or "already scored" in edge.deciding())
    assert "most noise" in verdicts["C2 t -> T (b)"].statement
    assert claims.table(list(verdicts.values())).data.loc["C2 t -> 0 (a)", "verdict at margin 0.05"] in (
        "UNDECIDED", "CONTRADICTED")


def test_size_plan_at_equal_epochs_and_equal_iterations():
    s = config.resolve("cpu", size_n_members="50,100,200", n_members=100, iterations=1200)
    plan = factors.size_plan(s)
    assert plan == {50: {"equal epochs": 600, "equal iterations": 1200},
                    100: {"equal epochs": 1200, "equal iterations": 1200},
                    200: {"equal epochs": 2400, "equal iterations": 1200}}


def test_ema_horizon_rule():
    assert factors.ema_horizon(0.995) == 200
    assert factors.ema_horizon(0.9) == 10
    assert factors.ema_horizon(0.0) == 1


def synthetic_size_study(shift_small, shift_large, n=40, seeds=3):
    points = []
    for budget in factors.BUDGETS:
        for members, shift in ((10, shift_small), (40, shift_large)):
            per_seed = [synthetic_study([0, shift, 0], n, 3 * n, seed=s + 10 * members) for s in range(seeds)]
            points.append(factors.SizePoint(members, budget, 100, 10.0, per_seed, list(range(seeds))))
    return factors.SizeStudy(points, 20)


@pytest.mark.heavy
def test_c3_three_ways():
    assert {v.outcome for v in synthetic_size_study(1.5, 0.2, n=150).verdicts()} == {Outcome.REPRODUCED}
    assert {v.outcome for v in synthetic_size_study(0.2, 1.5, n=150).verdicts()} == {Outcome.CONTRADICTED}
    undecided = synthetic_size_study(0.3, 0.25, n=15).verdicts()
    assert {v.outcome for v in undecided} == {Outcome.UNDECIDED}
    # the arms are defined by their member count: only nonmembers and seeds can grow, and no
    # member count is stated
    assert "training seeds" in undecided[0].deciding() and "already scored" in undecided[0].deciding()
    assert "x the sample" not in undecided[0].deciding()
    table = synthetic_size_study(1.5, 0.2).table()
    assert {"AUC seed 0", "AUC seed 1", "AUC seed 2", "AUC", "AUC low", "AUC high"} <= set(
        synthetic_size_study(1.5, 0.2).frame().columns)
    assert {"AUC per seed", "AUC [95%]", "TPR@1%FPR [95%]"} <= set(table.columns)  # the narrow table of the book


def synthetic_length_study(shifts, n=150, seeds=3):
    by_it = {it: [synthetic_study([0, shift, 0], n, 3 * n, seed=s + it) for s in range(seeds)]
             for it, shift in zip((200, 400, 600), shifts)}
    return factors.LengthStudy([200, 400, 600], by_it, list(range(seeds)), 200,
                               {it: (1.0, 1.1) for it in (200, 400, 600)})


@pytest.mark.heavy
def test_c4_three_ways():
    assert synthetic_length_study((0.2, 0.8, 1.5)).verdict().outcome is Outcome.REPRODUCED
    assert synthetic_length_study((1.5, 0.8, 0.2)).verdict().outcome is Outcome.CONTRADICTED
    assert synthetic_length_study((0.5, 0.5, 0.55), n=10).verdict().outcome is Outcome.UNDECIDED


@pytest.fixture(scope="module")
def snap_settings(tmp_path_factory):
    return config.resolve("smoke", runs_dir=str(tmp_path_factory.mktemp("runs")), iterations=30, snapshot_every=10,
                          ema_decay=0.9, n_seeds=2)


@pytest.mark.heavy
def test_length_study_attacks_every_snapshot_after_the_horizon_for_every_seed(snap_settings):
    study = factors.length_study(snap_settings, progress_bar=False)
    assert study.horizon == 10 and study.iterations == [10, 20, 30]
    assert all(len(study.studies[it]) == 2 for it in study.iterations)
    table = study.table()
    assert list(table.index) == [10, 20, 30] and {"AUC per seed", "AUC [95%]"} <= set(table.columns)
    assert (study.frame()["loss members"] > 0).all() and (study.frame()["loss nonmembers"] > 0).all()
    assert study.verdict().claim == "C4"


def test_length_study_skips_snapshots_before_the_horizon(tmp_path):
    s = config.resolve("smoke", runs_dir=str(tmp_path), iterations=30, snapshot_every=10, ema_decay=0.95, n_seeds=1)
    assert factors.length_study(s, progress_bar=False).iterations == [20, 30]  # horizon 20


def test_length_study_refuses_runs_without_snapshots(tmp_path):
    s = config.resolve("smoke", runs_dir=str(tmp_path), iterations=10, snapshot_every=0, n_seeds=1)
    with pytest.raises(ValueError, match="snapshot"):
        factors.length_study(s, progress_bar=False)


@pytest.mark.heavy
def test_size_study_trains_one_run_per_size_and_seed(tmp_path):
    """Sizes 8 and 16 around a 16-member target, 2 seeds: the 8-member runs train for the
    longer budget (equal iterations) and serve the shorter one (equal epochs) from a snapshot;
    the 16-member runs are the chapter target's configuration."""
    s = config.resolve("smoke", runs_dir=str(tmp_path), size_n_members="8,16", n_members=16, iterations=8,
                       snapshot_every=4, n_seeds=2)
    study = factors.size_study(s, progress_bar=False)
    table = study.table()
    assert sorted(table.index) == sorted((b, n) for b in factors.BUDGETS for n in (8, 16))
    assert table.loc[("equal epochs", 8), "iterations"] == 4 and table.loc[("equal iterations", 8), "iterations"] == 8
    trained = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("ddpm"))
    assert len(trained) == 4  # (8 members, 16 members) x 2 seeds, nothing trained twice
    assert [v.claim for v in study.verdicts()] == ["C3 (equal epochs)", "C3 (equal iterations)"]
    assert study.point("equal epochs", 16).studies[0].scores["members_test"].shape[0] == 8


def test_noise_study_rows_and_costs(smoke_run):
    chapter = loss_and_likelihood.loss_attack_study(smoke_run, progress_bar=False)
    study = factors.noise_study(smoke_run, chapter, progress_bar=False)
    table = study.table()
    draws, window = smoke_run.settings.factors.draws(), smoke_run.settings.factors.step_window
    assert len(table) == 2 * len(draws)
    assert sorted(table["queries per image"]) == sorted([k for k in draws] + [window * k for k in draws])
    assert chapter.steps[chapter.best_index_val] == study.steps[study.center]


@pytest.mark.heavy
def test_likelihood_settings_grid(smoke_run):
    study = factors.likelihood_settings_study(smoke_run, progress_bar=False)
    f, c = smoke_run.settings.factors, smoke_run.settings.likelihood
    expected = {(t, 1) for t in f.tolerances()} | {(c.lik_rtol, k) for k in f.probe_counts()}
    assert {(r["tolerance"], r["probes"]) for r in study.rows.values()} == expected
    assert all(r["members scored"] == min(f.factor_lik_max_images, smoke_run.settings.data.n_members)
               for r in study.rows.values())
