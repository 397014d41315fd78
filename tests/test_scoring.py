"""The one scoring path (``attacks.scoring.score_split``), including the attack it used to leave
out: the likelihood attack, scored on seeded random subsets of the members and nonmembers with
its bits/dim and ODE evaluations kept beside each score."""
import dataclasses

import numpy as np
import pytest

from miakit import attacks
from miakit.attacks import base, scoring
from miakit.chapters import loss_and_likelihood
from miakit.diffusion.likelihood import likelihood


def _solver(run, **change):
    return dataclasses.replace(run.settings.likelihood, **change)


def test_likelihood_goes_through_score_split_on_seeded_subsets(smoke_run, monkeypatch):
    c = _solver(smoke_run, lik_max_images=5)
    scored = scoring.score_split(smoke_run, "likelihood", progress_bar=False, max_images=5,
                                 grid=[{k: getattr(c, k) for k in ("lik_method", "lik_rtol", "lik_atol",
                                                                     "lik_probes", "lik_batch")}])
    assert set(scored.scores) == {"members", "nonmembers"}
    split = smoke_run.split
    for part, pool in (("members", split.members), ("nonmembers", split.nonmembers)):
        idx = scored.indices[part]
        assert len(idx) == 5 and np.isin(idx, pool).all()
        assert np.array_equal(idx, split.subset(part, 5))  # the split's one seeded draw
        assert not np.array_equal(idx, np.sort(pool)[:5])  # never "the first k" of a sorted part
        # the paper's statistic, computed here from its definition: log p under the PF-ODE, the
        # probes fixed by (attack seed, dataset index), bits/dim and each image's own evaluations
        direct = likelihood(smoke_run.model, smoke_run.family, smoke_run.images(idx), c.lik_rtol, c.lik_atol,
                            c.lik_method, smoke_run.settings.attack.attack_seed, c.lik_probes,
                            batch_size=c.lik_batch, progress_bar=False, ids=idx)
        np.testing.assert_allclose(scored.scores[part][:, 0], direct.logp, rtol=0, atol=1e-9)
        np.testing.assert_allclose(scored.extras["bpd"][part], direct.bpd, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(scored.extras["nfe"][part], direct.nfe)

    # a second call reads the cache: nothing is scored again
    def refuse(*args, **kwargs):
        raise AssertionError("scored again instead of read from the cache")
    monkeypatch.setattr(attacks, "score", refuse)
    again = scoring.score_split(smoke_run, "likelihood", progress_bar=False, max_images=5, grid=scored.grid)
    np.testing.assert_array_equal(again.scores["members"], scored.scores["members"])
    # and the chapters' likelihood study is that path's result, read back
    study = loss_and_likelihood.likelihood_study(smoke_run, progress_bar=False, config=c)
    assert np.array_equal(study.member_indices, scored.indices["members"])
    np.testing.assert_array_equal(study.logp_nonmembers, scored.scores["nonmembers"][:, 0])
    np.testing.assert_array_equal(study.bpd_members, scored.extras["bpd"]["members"])


def test_a_different_cap_draws_other_images_and_is_keyed_apart(smoke_run):
    grid = scoring.attacks.get("likelihood").grid(smoke_run.settings)
    few = scoring.score_split(smoke_run, "likelihood", progress_bar=False, max_images=3, grid=grid)
    more = scoring.score_split(smoke_run, "likelihood", progress_bar=False, max_images=5, grid=grid)
    assert len(few.indices["members"]) == 3 and len(more.indices["members"]) == 5
    assert np.isin(few.indices["members"], more.indices["members"]).all()  # nested draws
    # two caches (the scored images are in the key); an image's log p is not compared across them:
    # batched rounding moves it (miakit.diffusion.likelihood's docstring)
    assert scoring.export.cache_stem(smoke_run, "attack-likelihood", {}, few.indices) != \
        scoring.export.cache_stem(smoke_run, "attack-likelihood", {}, more.indices)


def test_a_subset_attack_must_choose_nothing_and_parts_must_not_overlap(smoke_run):
    grid = scoring.attacks.get("likelihood").grid(smoke_run.settings)
    with pytest.raises(ValueError, match="one setting"):
        scoring.score_split(smoke_run, "likelihood", progress_bar=False, max_images=3, grid=grid * 2)
    with pytest.raises(ValueError, match="scored twice"):
        scoring.score_split(smoke_run, "loss", progress_bar=False, parts=("members", "members_test"))
    with pytest.raises(ValueError, match="without repeats"):
        scoring.score_split(smoke_run, "loss", progress_bar=False, parts=("members_val", "members_val"))


def _declaring(monkeypatch, scorer):
    attack = base.Attack(name="extras-probe", label="probe", reference="(a test)", scorer=scorer,
                         grid=lambda settings: [{}], queries=lambda setting: 1, extras=("bpd",))
    monkeypatch.setitem(base.REGISTRY, attack.name, attack)
    return attack


@pytest.mark.parametrize("returned, error", [
    (lambda n: np.zeros((n, 1)), base.WrongShape),  # extras declared, none returned
    (lambda n: (np.zeros((n, 1)), {"nfe": np.zeros(n)}), base.WrongShape),  # not the declared ones
    (lambda n: (np.zeros((n, 1)), {"bpd": np.zeros(n + 1)}), base.WrongShape),  # one value too many
    (lambda n: (np.zeros((n, 1)), {"bpd": np.r_[np.zeros(n - 1), np.nan]}), base.NonFiniteScore),
])
def test_extras_are_checked_like_scores(monkeypatch, ddpm_family_and_model, returned, error):
    family, model, x = ddpm_family_and_model
    _declaring(monkeypatch, lambda model, family, x, grid, context: returned(x.shape[0]))
    with pytest.raises(error):
        attacks.score("extras-probe", model, family, x, [{}], attacks.Context(ids=np.arange(x.shape[0])), extras=True)


def test_extras_come_back_when_asked_and_scores_alone_otherwise(monkeypatch, ddpm_family_and_model):
    family, model, x = ddpm_family_and_model
    n = x.shape[0]
    _declaring(monkeypatch, lambda model, family, x, grid, context: (np.ones((n, 1)), {"bpd": np.arange(n)}))
    context = attacks.Context(ids=np.arange(n))
    values, side = attacks.score("extras-probe", model, family, x, [{}], context, extras=True)
    assert values.shape == (n, 1) and np.array_equal(side["bpd"], np.arange(n))
    assert attacks.score("extras-probe", model, family, x, [{}], context).shape == (n, 1)


def test_a_subset_attack_cannot_be_a_chapter_06_default():
    with pytest.raises(ValueError, match="validation"):
        base.register(base.Attack(name="subset-probe", label="probe", reference="-", scorer=None,
                                  grid=lambda s: [{}], queries=lambda s: None, max_images=lambda s: 3,
                                  default_in=("later_attacks",)))
    assert "subset-probe" not in base.REGISTRY


@pytest.fixture
def ddpm_family_and_model():
    import torch
    from miakit import diffusion
    from miakit.diffusion.unet import build_unet

    torch.manual_seed(0)
    family = diffusion.family("ddpm")
    model = build_unet("tiny", "ddpm", 8, 1).eval()
    return family, model, torch.rand(4, 1, 8, 8) * 2 - 1
