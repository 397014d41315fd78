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


def test_unlabelled_data_skips_the_feature_distance_with_a_note(smoke_study):
    import dataclasses

    s, study = smoke_study
    run = study.targets[0].run
    unlabelled = dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, labels=None))
    notes = []
    assert tradeoff._feature_reference(unlabelled, notes)[0] is None
    assert "no class labels" in notes[0]
    skipped = dataclasses.replace(study, reference_features=None, notes=notes)
    utility_verdicts = [v for v in skipped.verdicts() if v.claim.startswith("C5 utility")]
    assert utility_verdicts and all(not v.passed and v.evidence.startswith("not measured") for v in utility_verdicts)


def test_inception_fid_is_skipped_with_a_reason_when_unavailable():
    import importlib.util

    from miakit import utility

    if importlib.util.find_spec("torchmetrics") is not None:
        pytest.skip("torchmetrics is installed here; the skip path is not reachable")
    value, note = utility.inception_fid(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 8)))
    assert value is None and "torchmetrics" in note and "skipped" in note
