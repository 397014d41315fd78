"""The blind baselines: at chance on an IID split, and they catch a biased member set."""
import numpy as np
import torch

from miakit.attacks import blind
from miakit.evidence import claims, metrics
from miakit.core import data
from miakit.evidence.claims import Outcome


def digits():
    return data.load("digits", 8)


def test_blind_baseline_is_at_chance_on_an_iid_split():
    ds = digits()
    split = data.make_split("digits", len(ds), 300, 1000, 0.5, 0)
    study = blind.blind_study(ds.images, split)
    assert set(study.scores) == set(blind.ATTACKS)
    for name, e in study.estimates().items():
        m, n = study.scores[name]
        assert len(m) == 300 and len(n) == 1000  # cross-fitted: every image scored once
        assert claims.within(name, e).outcome is Outcome.REPRODUCED, (name, e.text())


def test_blind_baseline_catches_members_drawn_from_one_block_of_the_dataset():
    """Members taken from the first indices (a few writers of the digits set) against
    nonmembers from the rest: the nearest-neighbour baseline sees it without any model."""
    ds = digits()
    idx = np.arange(len(ds))
    biased = data.Split("digits", len(ds), 0, idx[0:50], idx[50:100], idx[100:600], idx[600:1100])
    e = blind.blind_study(ds.images, biased).estimates()["nearest neighbour"]
    assert claims.within("nn", e).outcome is Outcome.CONTRADICTED and e.value > 0.6


def test_blind_baseline_catches_a_shift_in_pixel_statistics():
    """Members brighter than nonmembers (a different camera, say): the pixel-statistics
    baseline separates them."""
    gen = torch.Generator().manual_seed(0)
    members = (torch.rand(200, 1, 8, 8, generator=gen) * 1.6 - 0.6).clamp(-1, 1)
    nonmembers = (torch.rand(400, 1, 8, 8, generator=gen) * 1.6 - 1.0).clamp(-1, 1)
    images = torch.cat([members, nonmembers])
    split = data.Split("synthetic", 600, 0, np.arange(0, 100), np.arange(100, 200), np.arange(200, 400),
                       np.arange(400, 600))
    e = blind.blind_study(images, split).estimates()["pixel statistics"]
    assert e.low > 0.9


def test_blind_scores_use_no_model_and_are_oriented_higher_for_members():
    ds = digits()
    x = ds.images[:40]
    scores = blind.nearest_neighbour_scores(x[:20], x[20:], x)
    assert (scores[:20] > 0).all() and (scores[20:] < 0).all()  # each image is its own nearest neighbour
    table = blind.BlindStudy({"nearest neighbour": (scores[:20], scores[20:])}).table()
    assert table.loc["nearest neighbour", "AUC [95%]"].startswith("1.000 [")
    assert "TPR@1%FPR [95%]" not in table.columns  # 20 nonmembers cannot show 1% FPR: left out, not NaN
    assert metrics.auc_of(scores[:20], scores[20:]) == 1.0


def test_halves_scored_by_different_fits_are_never_pooled():
    """The two halves are scored by different fits, whose scores are not comparable: pooled, an
    offset between the halves pulls the AUC towards chance (the wrong way for an at-chance
    claim); within each half it is not."""
    rng = np.random.default_rng(0)
    m = np.r_[rng.normal(1.8, 1, 50) + 5, rng.normal(1.8, 1, 50)]  # half 0 scored 5 higher by its fit
    n = np.r_[rng.normal(0, 1, 500) + 5, rng.normal(0, 1, 500)]
    groups = (np.r_[np.zeros(50, int), np.ones(50, int)], np.r_[np.zeros(500, int), np.ones(500, int)])
    stratified = blind.BlindStudy({"x": (m, n)}, {"x": groups}).estimates()["x"]
    pooled = metrics.estimate_split(m, n, n_boot=200)
    assert stratified.value > 0.85 and pooled.value < 0.75


def test_iid_verdict_rests_on_the_whole_split_at_cpu_sizes():
    """The cpu profile's split (100 members, 1000 nonmembers): every blind baseline scores every
    image once, the AUC within each half, and the verdict is shown at both margins."""
    from miakit.chapters import loss_and_likelihood

    ds = digits()
    split = data.make_split("digits", len(ds), 100, 1000, 0.5, 0)
    study = blind.blind_study(ds.images, split)
    for name in blind.ATTACKS:
        gm, gn = study.groups[name]
        assert np.bincount(gm).tolist() == [50, 50] and np.bincount(gn).tolist() == [500, 500]
    verdict = loss_and_likelihood.iid_verdict(study)
    assert all((c.estimate.n_members, c.estimate.n_nonmembers) == (100, 1000) for c in verdict.checks)
    assert verdict.margin_dependent and verdict.outcome is not Outcome.CONTRADICTED
    assert claims.AT_CHANCE_TEXT in verdict.statement and "at margin 0.05" in verdict.evidence()
