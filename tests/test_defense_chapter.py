"""Chapter 07's plan and claims (``miakit.chapters.defenses``): its arms change only their own
knobs, its trainings are counted, and its claim comes out every way."""
import dataclasses
import math

import pytest

from miakit.chapters import budget, defenses, differential_privacy as dp
from miakit.core import config
from miakit.diffusion.unet import build_unet, n_parameters
from miakit.evidence import claims, metrics


@pytest.mark.parametrize("profile", sorted(config.PROFILES))
def test_every_arm_is_chapter_05s_no_defense_target_changed_by_its_own_knobs_only(profile):
    s = config.resolve(profile)
    base = dp.target_settings(s, "ddpm", dp.arm_specs(s)[0], 0)
    arms = defenses.defense_arms(s)
    labels = " ".join(a.label for a in arms)
    for kind in ("early stopping", "augmentation", "weight decay", "smaller UNet", "distillation"):
        assert kind in labels
    assert sum("weight decay" in a.label for a in arms) == 2
    for arm in arms:
        target = defenses.defense_settings(s, "ddpm", arm, 0).target
        changed = {f.name for f in dataclasses.fields(target) if getattr(target, f.name) != getattr(base.target, f.name)}
        assert changed == set(arm.change) - {k for k, v in arm.change.items() if getattr(base.target, k) == v}
        assert target.trainer == "dp-sgd" and math.isinf(target.dp_epsilon) and math.isinf(target.dp_max_grad_norm)
    smaller = next(a for a in arms if "smaller" in a.label)
    model = smaller.change["model"]
    assert (n_parameters(build_unet(model, "ddpm", s.data.resolution, 3))
            < n_parameters(build_unet(s.target.model, "ddpm", s.data.resolution, 3)))


def test_the_budget_counts_the_defenses_trainings_but_not_early_stopping():
    s = config.resolve("cpu")
    ours = [t for t in budget.trainings(s) if t.chapter == "07"]
    trained = [a for a in defenses.defense_arms(s) if not a.early_stop]
    assert len(ours) == len(trained) * s.comparison.n_seeds * len(s.privacy_study.families())
    assert not any("early stopping" in t.what for t in ours)
    # chapter 05's no-defense targets keep the snapshots early stopping evaluates
    base = dp.target_settings(s, "ddpm", dp.arm_specs(s)[0], 0).target
    assert base.iterations // base.snapshot_every == s.defenses.defense_evaluations


def test_the_dp_reference_must_be_one_of_chapter_05s_arms():
    with pytest.raises(ValueError, match="defense_dp_epsilon"):
        config.resolve("smoke", defense_dp_epsilon=3)


def _estimate(value, low, high):
    return metrics.Estimate(value, low, high, 0.01, 16, 48, 2)


class _Arm:
    def attack_arm(self, name):
        return name

    def grows(self, name):
        return claims.EVERY_MEMBER_SCORED


class _Tradeoff:
    notes, reference_features = [], object()

    def __init__(self, fd):
        self.fd = fd

    def attack_names(self):
        return ["loss"]

    def families(self):
        return ["ddpm"]

    def arm(self, family, label):
        return _Arm()

    def fd_difference(self, family, label, than):
        return self.fd


@pytest.mark.parametrize("auc_drop, fd_gain, outcome", [
    ((0.2, 0.15, 0.25), (50.0, 10.0, 90.0), claims.Outcome.REPRODUCED),  # lowers AUC by > 0.1, better samples
    ((0.02, -0.01, 0.05), (50.0, 10.0, 90.0), claims.Outcome.CONTRADICTED),  # leaks as before
    ((0.2, 0.15, 0.25), (-50.0, -90.0, -10.0), claims.Outcome.CONTRADICTED),  # worse samples than DP-SGD
    ((0.12, 0.05, 0.2), (50.0, 10.0, 90.0), claims.Outcome.UNDECIDED),  # the interval straddles 0.1
])
def test_the_defense_claim_goes_every_way(monkeypatch, auc_drop, fd_gain, outcome):
    s = config.resolve("smoke")
    monkeypatch.setattr(metrics, "estimate_difference", lambda a, b, paired: _estimate(*auc_drop))
    arms = {a.label: a for a in defenses.defense_arms(s)}
    study = defenses.DefenseStudy(s, _Tradeoff(_estimate(*fd_gain)), arms, {})
    verdicts = study.verdicts()
    assert len(verdicts) == len(arms)
    assert {v.outcome for v in verdicts} == {outcome}
    assert all(f"by more than {defenses.REDUCTION:g}" in v.statement for v in verdicts)
