"""Chapter 06's benchmark regime: its own targets and split, every choice made on the validation
part only, the test part scored at the chosen setting only, and the claims it feeds."""
import numpy as np
import pytest

from miakit import attacks
from miakit.chapters import benchmark, feasibility
from miakit.evidence import claims, metrics
from miakit.core import config
from miakit.training import train


def test_length_nearest_the_band_centre_is_chosen_and_a_saturated_end_is_not():
    centre = sum(benchmark.BAND) / 2
    # a family that saturates: the last snapshot (AUC 1.0) must not be chosen, the one at 0.84 must
    curve = [(250, 0.70), (500, 0.84), (750, 0.97), (1000, 1.0)]
    assert benchmark.choose_length(curve) == 500
    # a family still weak at the end: its last (strongest) snapshot is the nearest to the band
    assert benchmark.choose_length([(250, 0.55), (500, 0.62), (750, 0.70)]) == 750
    # equal distances from the centre: the shorter training
    assert benchmark.choose_length([(250, centre - 0.05), (500, centre + 0.05)]) == 250


def test_benchmark_settings_take_the_regime_dataset_split_length_and_lr_and_keep_the_recipe():
    s = config.resolve("cpu")
    b = benchmark.bench_settings(s)
    assert (b.data.dataset, b.data.n_members, b.data.n_nonmembers, b.data.val_fraction) == (
        s.benchmark.bench_dataset, s.benchmark.bench_n_members, s.benchmark.bench_n_nonmembers,
        s.benchmark.bench_val_fraction)
    assert (b.target.iterations, b.target.lr) == (s.benchmark.bench_iterations, s.benchmark.bench_lr)
    assert (b.target.model, b.target.batch_size, b.target.ema_decay) == (s.target.model, s.target.batch_size,
                                                                        s.target.ema_decay)
    assert b.target.iterations // b.target.snapshot_every == benchmark.SNAPSHOTS
    assert train.run_dir(b).name != train.run_dir(s).name
    test_nonmembers = round(s.benchmark.bench_n_nonmembers * (1 - s.benchmark.bench_val_fraction))
    assert test_nonmembers >= 5000  # TPR at 0.1% FPR needs at least 1000 test nonmembers, with room


def test_the_regime_can_be_switched_off_and_its_bad_values_are_refused():
    assert not benchmark.enabled(config.resolve("smoke", bench_n_members=0))
    assert benchmark.trainings(config.resolve("smoke", bench_n_members=0)) == []
    for bad in (dict(bench_lr=0.0), dict(bench_val_fraction=1.0), dict(bench_n_members=-1),
                dict(bench_dataset="mnist")):
        with pytest.raises(ValueError, match="bench_"):
            config.resolve("smoke", **bad)
    off = benchmark.Off()
    assert off.verdicts() == [] and off.table() == benchmark.OFF_NOTE


def test_attacks_the_regime_does_not_run_are_refused_before_anything_is_trained(tmp_path):
    s = config.resolve("smoke", runs_dir=str(tmp_path))
    for name in ("reference", "likelihood"):
        with pytest.raises(ValueError, match="not run in the benchmark regime"):
            benchmark.benchmark(s, names=[name], progress_bar=False)
    assert not any(tmp_path.iterdir())


def test_the_benchmark_split_is_checked_against_its_own_dataset():
    s = config.resolve("smoke", bench_n_members=50, bench_n_nonmembers=100)
    with pytest.raises(feasibility.Infeasible, match=r"bench_n_members=50 \+ bench_n_nonmembers=100.* = 150 images"):
        feasibility.check(s, n_images=1797, bench_images=120)
    feasibility.check(s, n_images=1797, bench_images=150)  # exactly enough: fits


@pytest.fixture(scope="module")
def smoke_bench(tmp_path_factory):
    s = config.resolve("smoke", runs_dir=str(tmp_path_factory.mktemp("runs")))
    return benchmark.benchmark(s, progress_bar=False)


def test_every_family_gets_the_authors_statistics_and_the_sde_families_both_forms(smoke_bench):
    by_family = {}
    for family, name in smoke_bench.outcomes:
        by_family.setdefault(family, set()).add(name)
    discrete = {"loss", "secmi", "pia", "pian", "sima"}
    continuous = {"secmi_ode", "pia_ode", "pian_ode"}
    assert by_family["ddpm"] == by_family["smld"] == discrete
    assert by_family["vpsde"] == by_family["vesde"] == discrete | continuous
    table = smoke_bench.cost_table()
    statistic = dict(zip(table.index, table["statistic"]))
    assert statistic[("ddpm", "PIA")].startswith("the authors'")
    assert "mapped" in statistic[("vpsde", "PIA")] and "continuous-time" in statistic[("vpsde", "PIA (PF-ODE)")]
    assert ("(every family)", "likelihood") in statistic and ("(every family)", "reference (LiRA offline)") in statistic
    seconds = table["seconds / image"]
    assert (seconds[[k for k in table.index if k[0] != "(every family)"]] > 0).all()
    assert not any(k[0] == "ddpm" and "PF-ODE" in k[1] for k in table.index)  # no continuous-time form on DDPM
    assert list(smoke_bench.table().columns) == ["AUC [95%]", "TPR@1%FPR [95%]", "TPR@0.1%FPR [95%]",
                                                 "chosen on validation", "validation AUC"]


def test_settings_and_lengths_are_chosen_on_validation_and_only_the_chosen_setting_is_tested(smoke_bench):
    split = smoke_bench.split
    for (family, name), o in smoke_bench.outcomes.items():
        aucs = [r.auc for r in o.val]
        assert len(aucs) == len(attacks.get(name).grid(smoke_bench.settings)) > 0
        assert o.chosen_index == int(np.nanargmax(aucs))  # the best validation AUC, nothing else
        assert o.members.shape == (len(split.members_test),)  # one setting on the test part
        assert o.nonmembers.shape == (len(split.nonmembers_test),)
    for family, curve in smoke_bench.recipe.items():
        assert smoke_bench.lengths[family] == benchmark.choose_length(curve)
        assert [it for it, _ in curve][-1] == smoke_bench.settings.target.iterations


def test_the_strongest_attack_is_the_best_on_validation_even_when_another_wins_on_test(smoke_bench):
    family = "ddpm"
    found = {name: o for (f, name), o in smoke_bench.outcomes.items() if f == family}
    best_val = max(found, key=lambda name: found[name].val_auc)
    assert smoke_bench.strongest(family).attack == best_val


def test_l1_verdicts_judge_every_later_attack_and_no_paper_attack(smoke_bench):
    verdicts = smoke_bench.verdicts()
    later = [(f, n) for (f, n) in smoke_bench.outcomes if not attacks.get(n).paper]
    assert len(verdicts) == len(later) == 4 + 4 + 7 + 7
    assert not any("loss" in v.claim for v in verdicts)
    for v, (family, name) in zip(verdicts, later):
        o = smoke_bench.outcomes[(family, name)]
        assert v.outcome is claims.beats_chance("x", o.estimate()).outcome


def test_glue_of_an_off_regime_has_every_name_the_chapter_quotes(smoke_bench):
    on, off = smoke_bench.glue_values(), benchmark.Off().glue_values()
    assert set(on) == set(off)
    assert on["bench_nonmembers_test"] == len(smoke_bench.split.nonmembers_test)


def test_test_estimates_are_the_bootstrap_estimates_of_the_test_scores(smoke_bench):
    o = next(iter(smoke_bench.outcomes.values()))
    assert o.estimate().value == pytest.approx(metrics.auc_of(o.members, o.nonmembers))
