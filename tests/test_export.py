"""Per-image scores exported beside the run (miakit.evidence.export): a reader recomputes the book's
numbers from the files alone."""
import dataclasses
import errno
import types

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from miakit import diffusion
from miakit.evidence import export, metrics
from miakit.attacks import scoring
from miakit.chapters import loss_and_likelihood
from miakit.core.data import PARTS


def _stem(run, scored):
    """The export's stem, from score_split's cache payload (written out here, as score_split does)."""
    payload = {"grid": scored.grid, "seed": run.settings.attack.attack_seed, "format": scoring.FORMAT}
    images = {part: getattr(run.split, part) for part in PARTS}
    return export.cache_stem(run, "attack-loss", payload, images)


def _auc_from_file(table, setting, part="test"):
    rows = table[(table["setting"] == setting) & table["part"].isin([f"members_{part}", f"nonmembers_{part}"])]
    return roc_auc_score(rows["member"], rows["score"])


def test_exported_scores_recompute_the_auc(smoke_run):
    scored = scoring.score_split(smoke_run, "loss", progress_bar=False)
    stem = _stem(smoke_run, scored)
    assert (smoke_run.dir / f"{stem}.safetensors").exists()  # the export names the cache it comes from
    path = export.path_of(smoke_run.dir, stem)
    assert path.exists() and path.name.startswith("scores-attack-loss-")
    table = export.load_scores(path)
    n_images = sum(len(getattr(smoke_run.split, p)) for p in PARTS)
    assert len(table) == n_images * len(scored.grid)
    assert {"run", "cache", "attack", "part", "member", "index", "setting", "t", "n_noise", "family_step",
            "paper_label", "score"} <= set(table.columns)
    assert set(table["attack"]) == {"loss"} and set(table["run"]) == {smoke_run.key} and set(table["cache"]) == {stem}
    for part in PARTS:
        rows = table[(table["part"] == part) & (table["setting"] == 0)]
        assert np.array_equal(rows["index"], getattr(smoke_run.split, part))
        assert set(rows["member"]) == {int(part.startswith("members"))}
    fam = smoke_run.family
    assert list(table.loc[table["index"] == table["index"][0], "t"]) == [g["t"] for g in scored.grid]
    assert np.allclose(table["family_step"], [fam.from_paper_step(t) for t in table["t"]])
    for j in range(len(scored.grid)):
        expected = metrics.evaluate_split(scored.scores["members_test"][:, j], scored.scores["nonmembers_test"][:, j])
        assert _auc_from_file(table, j) == pytest.approx(expected.auc, abs=1e-12)
    # the whole run folder read back, this attack only
    assert len(export.load_scores(smoke_run.dir, attack="loss").query("cache == @stem")) == len(table)
    assert export.load_scores(smoke_run, attack="no-such-attack").empty


def test_a_second_call_neither_rewrites_nor_duplicates(smoke_run):
    first = scoring.score_split(smoke_run, "loss", progress_bar=False)
    stem = _stem(smoke_run, first)
    path = export.path_of(smoke_run.dir, stem)
    before = path.stat().st_mtime_ns
    again = scoring.score_split(smoke_run, "loss", progress_bar=False)
    assert path.stat().st_mtime_ns == before
    table = export.load_scores(smoke_run.dir, attack="loss")
    assert not table.duplicated(["cache", "index", "setting"]).any()
    assert np.array_equal(again.scores["members_test"], first.scores["members_test"])
    path.unlink()  # a missing export is written again, even when the scores come from the cache
    scoring.score_split(smoke_run, "loss", progress_bar=False)
    assert len(export.load_scores(path)) == len(table[table["cache"] == stem]) > 0


def test_a_read_only_store_still_returns_scores_with_a_warning(smoke_run, monkeypatch):
    def refuse(path, table):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(export, "_write_csv", refuse)
    a = smoke_run.settings.attack
    settings = dataclasses.replace(smoke_run.settings, attack=dataclasses.replace(a, attack_steps=3))
    with pytest.warns(UserWarning, match="read-only"):
        scored = scoring.score_split(smoke_run, "loss", settings, progress_bar=False)
    assert scored.scores["members_test"].shape == (len(smoke_run.split.members_test), 3)
    assert np.isfinite(scored.scores["members_test"]).all()
    assert not export.path_of(smoke_run.dir, _stem(smoke_run, scored)).exists()


def test_likelihood_scores_are_exported(smoke_run):
    study = loss_and_likelihood.likelihood_study(smoke_run, progress_bar=False)
    table = export.load_scores(smoke_run.dir, attack="likelihood")
    c = smoke_run.settings.likelihood  # other tests share this run: keep the files of this study's solver and images
    table = table[(table["lik_rtol"] == c.lik_rtol) & (table["lik_atol"] == c.lik_atol)
                  & (table["lik_method"] == c.lik_method) & (table["lik_probes"] == c.lik_probes)]
    chosen = [stem for stem, rows in table.groupby("cache")
              if set(rows.loc[rows["member"] == 1, "index"]) == set(study.member_indices)]
    assert len(chosen) == 1
    table = table[table["cache"] == chosen[0]]
    assert len(table) == len(study.member_indices) + len(study.nonmember_indices)
    assert {"lik_rtol", "lik_atol", "lik_method", "lik_probes", "bpd", "nfe"} <= set(table.columns)
    members = table[table["member"] == 1]
    assert np.array_equal(members["index"], study.member_indices)
    assert np.allclose(members["score"], study.logp_members, rtol=0, atol=0)
    assert np.allclose(table.loc[table["member"] == 0, "bpd"], study.bpd_nonmembers, rtol=0, atol=0)
    assert set(members["part"]) <= {"members_val", "members_test"}
    assert roc_auc_score(table["member"], table["score"]) == pytest.approx(study.result.auc, abs=1e-12)


def test_steps_carry_the_paper_codes_label():
    """The export's columns for a grid with a step: the family's own step and the paper code's
    label of it (mirrored for SMLD)."""
    fam = diffusion.family("smld")
    split = types.SimpleNamespace(**{p: np.array([i]) for i, p in enumerate(PARTS)})
    run = types.SimpleNamespace(family=fam, split=split, key="k",
                                settings=types.SimpleNamespace(target=types.SimpleNamespace(iterations=5)))
    grid = [{"t": 0, "n_noise": 1}, {"t": 50, "n_noise": 1}, {"t": 999, "n_noise": 1}]
    scores = {p: np.array([[1.0, 2.0, 3.0]]) for p in PARTS}
    table = export.frame(run, "loss", "attack-loss-x", grid, scores, {p: getattr(split, p) for p in PARTS}, seed=0)
    one = table[table["part"] == "members_test"]
    assert list(one["family_step"]) == [0, 50, 999] and list(one["paper_label"]) == [999, 949, 0]
    assert list(table["member"]) == [1] * 3 + [0] * 3 + [1] * 3 + [0] * 3
    assert set(table["iteration"]) == {5}
    with pytest.raises(ValueError, match="clash"):
        export.frame(run, "x", "s", [{"score": 1}], {p: np.ones((1, 1)) for p in PARTS},
                     {p: getattr(split, p) for p in PARTS}, seed=0)


def test_a_chosen_setting_on_chosen_parts_matches_the_whole_grid(smoke_run):
    """score_split(parts=..., grid=...): only those parts, only that setting, read back from a
    cache of its own; a part that is not one of the split's is refused."""
    whole = scoring.score_split(smoke_run, "loss", progress_bar=False)
    j = len(whole.grid) // 2
    some = scoring.score_split(smoke_run, "loss", progress_bar=False, parts=("members_test", "nonmembers_test"),
                               grid=[whole.grid[j]])
    assert set(some.scores) == {"members_test", "nonmembers_test"} and some.grid == [whole.grid[j]]
    again = scoring.score_split(smoke_run, "loss", progress_bar=False, parts=("members_test", "nonmembers_test"),
                                grid=[whole.grid[j]])
    for part in some.scores:  # the noise draws depend on the grid, so the values are its own; the cache returns them
        assert some.scores[part].shape == (len(getattr(smoke_run.split, part)), 1)
        assert np.isfinite(some.scores[part]).all()
        assert np.array_equal(again.scores[part], some.scores[part])
    with pytest.raises(ValueError, match="parts"):
        scoring.score_split(smoke_run, "loss", progress_bar=False, parts=("members_train",))
