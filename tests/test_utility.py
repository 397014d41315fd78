"""The offline sample-quality metric: a Frechet distance in a small classifier's features."""
import numpy as np
import pytest
import torch

from miakit.evidence import sample_quality


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2 + np.array([1.0, 0.0, -1.0])
    # |mu|^2 + tr(I + 4I - 2 * 2I) = 2 + 3
    assert sample_quality.frechet_distance(a, b) == pytest.approx(5.0, rel=0.03)
    assert sample_quality.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        sample_quality.frechet_distance(a[:1], b)


@pytest.mark.heavy
def test_classifier_learns_digits_and_separates_real_from_noise(smoke_run, tmp_path):
    clf = sample_quality.classifier(smoke_run, runs_dir=tmp_path)
    assert clf.accuracy > 0.85 and clf.n_train == len(smoke_run.split.unused)
    assert any((tmp_path / "classifiers").glob("features-*.safetensors"))  # cached
    again = sample_quality.classifier(smoke_run, runs_dir=tmp_path)
    assert again.accuracy == clf.accuracy
    real = smoke_run.images(smoke_run.split.unused[:400])
    other = smoke_run.images(smoke_run.split.unused[400:800])
    noise = torch.rand(400, *real.shape[1:], generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_vs_real = sample_quality.frechet_distance(clf.features(real), clf.features(other))
    real_vs_noise = sample_quality.frechet_distance(clf.features(real), clf.features(noise))
    assert real_vs_noise > 5 * real_vs_real


def test_unlabelled_dataset_has_no_classifier(smoke_run):
    import dataclasses

    unlabelled = dataclasses.replace(smoke_run, dataset=dataclasses.replace(smoke_run.dataset, labels=None))
    with pytest.raises(ValueError, match="no class labels"):
        sample_quality.classifier(unlabelled)
