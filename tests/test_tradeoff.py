"""The privacy-utility trade-off of chapter 05 on the smoke profile, and its C5 verdicts."""
import math

import numpy as np
import pytest

from miakit import config, tradeoff


def test_fd_difference_sees_a_worse_generator():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 4))
    good, bad = rng.normal(size=(400, 4)), rng.normal(size=(400, 4)) * 1.5 + 1.0
    diff, lo, hi = tradeoff.fd_difference(bad, good, reference, n_boot=50)
    assert diff > 0 and 0 < lo < diff < hi


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    s = config.resolve("smoke", runs_dir=str(tmp_path_factory.mktemp("runs")))
    return s, tradeoff.tradeoff_study(s, progress_bar=False)


def test_every_target_is_trained_attacked_and_scored(smoke_study):
    s, study = smoke_study
    p = s.privacy_study
    table = study.table()
    assert len(table) == len(p.families()) * len(p.epsilons())
    for target in study.targets:
        assert target.run.settings.data.n_members == p.dp_members
        assert target.run.settings.target.iterations == p.dp_iterations
        assert target.samples.shape[0] == p.utility_samples and math.isfinite(target.fd) and target.fd >= 0
        if math.isfinite(target.epsilon):
            assert target.run.history["dp"]["epsilon_spent"] <= target.epsilon * 1.01
        else:
            assert "dp" not in target.run.history
    assert math.isfinite(study.fd_floor) and 0 <= study.classifier_accuracy <= 1
    assert len(study.sample_grids()) == len(study.targets)


def test_c5_verdicts_per_family(smoke_study):
    s, study = smoke_study
    verdicts = study.verdicts()
    assert [v.claim for v in verdicts] == [f"C5 {half} ({name})" for name in s.privacy_study.families()
                                           for half in ("attacks", "utility")]
    assert all(v.evidence for v in verdicts)
