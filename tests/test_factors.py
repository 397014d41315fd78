"""The factor studies of chapter 04 and their computed verdicts."""
import numpy as np
import pytest

from miakit import config, factors, studies, train


def synthetic_study(separation_per_step, n_members=60, n_nonmembers=120, seed=0):
    """A loss-attack study whose member scores exceed the nonmembers' by the given shift per step."""
    rng = np.random.default_rng(seed)
    shift = np.asarray(separation_per_step, dtype=float)
    scores = {}
    for part, n, member in (("members_val", n_members, True), ("nonmembers_val", n_nonmembers, False),
                            ("members_test", n_members, True), ("nonmembers_test", n_nonmembers, False)):
        scores[part] = rng.normal(size=(n, len(shift))) + (shift if member else 0.0)
    return studies.LossAttackStudy.from_scores(np.arange(len(shift)) * 100, scores)


def test_c2_passes_when_only_an_intermediate_step_separates():
    study = factors.step_study({"a": synthetic_study([0, 0.2, 2.0, 0.3, 0]),
                                "b": synthetic_study([0, 1.5, 0.5, 0, 0], seed=1)})
    c2, ends = study.verdicts()
    assert c2.passed and ends.passed
    assert set(study.table().index) == {"a", "b"}


def test_c2_fails_when_an_end_leaks_as_much():
    study = factors.step_study({"a": synthetic_study([2.0, 0.2, 2.0, 0.3, 0])})
    c2, ends = study.verdicts()
    assert not c2.passed and not ends.passed
    assert "first" in c2.evidence


def test_size_settings_keep_epochs():
    s = config.resolve("cpu", size_members="50,100,200", size_epochs=0)
    sized = factors.size_settings(s)
    assert sorted(sized) == [50, 100, 200]
    assert sized[100].target_hash() == s.target_hash()  # the profile's epochs: the chapter's own target
    for n, v in sized.items():
        assert v.data.n_members == n
        assert v.target.iterations * v.target.batch_size / n == pytest.approx(
            s.target.iterations * s.target.batch_size / s.data.n_members, rel=0.01)
    half = factors.size_settings(config.resolve("cpu", size_members="50,100", size_epochs=384))
    assert [v.target.iterations for v in half.values()] == [300, 600]


def test_verdict_needs_the_sign_and_an_interval_above_zero():
    assert factors.Difference(0.1, 0.02, 0.2).excludes_zero_above
    assert not factors.Difference(0.1, -0.01, 0.2).excludes_zero_above
    assert not factors.Difference(-0.1, -0.2, -0.01).excludes_zero_above
    table = factors.verdict_table([factors.Verdict("C9", "x", True, "e"), factors.Verdict("C8", "y", False, "f")])
    assert list(table.data["verdict"]) == ["reproduced", "not reproduced here"]
    assert "not reproduced here" in table.to_html()


@pytest.fixture(scope="module")
def snap_run(tmp_path_factory):
    s = config.resolve("smoke", runs_dir=str(tmp_path_factory.mktemp("runs")), iterations=30, snapshot_every=10)
    return train.ensure(s, progress_bar=False)


def test_length_study_attacks_every_snapshot(snap_run):
    study = factors.length_study(snap_run, progress_bar=False)
    assert [p.value for p in study.points] == [10, 20, 30]
    table = study.table()
    assert list(table.index) == [10, 20, 30]
    assert (table["loss members"] > 0).all() and (table["loss nonmembers"] > 0).all()
    assert study.verdict().claim == "C4"


def test_length_study_refuses_a_run_without_snapshots(tmp_path):
    run = train.ensure(config.resolve("smoke", runs_dir=str(tmp_path), iterations=10, snapshot_every=0),
                       progress_bar=False)
    with pytest.raises(ValueError, match="snapshot"):
        factors.length_study(run, progress_bar=False)


def test_size_study_trains_one_target_per_size(tmp_path):
    s = config.resolve("smoke", runs_dir=str(tmp_path), size_members="8,16", iterations=8)
    study = factors.size_study(s, progress_bar=False)
    table = study.table()
    assert list(table.index) == [8, 16]
    assert list(table["iterations"]) == [4, 8]
    assert study.verdict().claim == "C3"


def test_size_study_reuses_the_chapter_target_s_snapshot(tmp_path):
    """At half the epochs, the chapter's own member set is its target's snapshot at half the
    iterations: no second target is trained for it."""
    s = config.resolve("smoke", runs_dir=str(tmp_path), size_members="8,16", iterations=8, snapshot_every=4,
                       size_epochs=4)
    study = factors.size_study(s, progress_bar=False)
    table = study.table()
    assert list(table["iterations"]) == [2, 4]
    assert table.loc[16, "model"] == "the chapter's target at iteration 4"
    trained = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("ddpm"))
    assert len(trained) == 2  # the chapter's target and the 8-member one


def test_noise_study_rows_and_costs(snap_run):
    chapter = studies.loss_attack_study(snap_run, progress_bar=False)
    study = factors.noise_study(snap_run, chapter, progress_bar=False)
    table = study.table()
    draws, window = snap_run.settings.factors.draws(), snap_run.settings.factors.step_window
    assert len(table) == 2 * len(draws)
    assert sorted(table["queries per image"]) == sorted([k for k in draws] + [window * k for k in draws])
    assert chapter.steps[chapter.best_index_val] == study.steps[study.center]


def test_likelihood_settings_grid(snap_run):
    study = factors.likelihood_settings_study(snap_run, progress_bar=False)
    f, c = snap_run.settings.factors, snap_run.settings.likelihood
    expected = {(t, 1) for t in f.tolerances()} | {(c.lik_rtol, k) for k in f.probe_counts()}
    assert {(r["tolerance"], r["probes"]) for r in study.rows.values()} == expected
    assert all(r["test members"] == f.factor_lik_images for r in study.rows.values())
