"""The defenses' trainings do what they claim (issue 24): augmentation trains on transformed
images, weight decay is AdamW's decoupled decay, distillation never reads a member image, early
stopping stops on its held-out criterion; and none of the new knobs moves a stored run's key at
its default."""
import dataclasses

import numpy as np
import pytest
import torch

from miakit.core import config
from miakit.core.config import stable_hash
from miakit.training import early_stopping, train
from miakit.training.early_stopping import stopping_point


def _target(**change):
    return dataclasses.replace(config.resolve("smoke").target, **change)


# ---- augmentation -------------------------------------------------------------------------------

def _dot(n=6, size=8, at=(3, 4)):
    x = -torch.ones(n, 1, size, size)
    x[:, 0, at[0], at[1]] = 1.0
    return x


def test_no_augmentation_draws_nothing_and_changes_nothing():
    gen = torch.Generator().manual_seed(5)
    before = gen.get_state().clone()
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(train.augment(x, _target(random_flip=False, random_shift=0), gen), x)
    assert torch.equal(gen.get_state(), before)  # a run without augmentation draws what it drew before


def test_shifts_move_each_image_by_at_most_s_pixels_and_cover_every_offset():
    s, x = 1, _dot(n=400)
    out = train.augment(x, _target(random_flip=False, random_shift=s), torch.Generator().manual_seed(0))
    offsets = set()
    for img in out[:, 0]:
        hot = torch.nonzero(img > 0)
        assert len(hot) == 1  # the dot moved, nothing smeared (it is away from the edge)
        dy, dx = (hot[0] - torch.tensor([3, 4])).tolist()
        assert abs(dy) <= s and abs(dx) <= s
        offsets.add((dy, dx))
        assert torch.all(img[img <= 0] == -1)  # the background stays background (edges repeated)
    assert offsets == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def _moved(x, s=1):
    """Every copy of ``x`` moved by (dy, dx) in [-s, s]^2 with its edge pixels repeated:
    [offsets, n, c, h, w], and the offsets."""
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (s, s, s, s), mode="replicate")
    offsets = [(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1)]
    return torch.stack([padded[..., s - dy:s - dy + h, s - dx:s - dx + w] for dy, dx in offsets]), offsets


def test_edge_pixels_are_repeated_when_an_image_moves():
    x = torch.rand(300, 1, 5, 5)
    out = train.augment(x, _target(random_flip=False, random_shift=1), torch.Generator().manual_seed(2))
    copies, offsets = _moved(x)
    match = (copies == out[None]).flatten(2).all(2)  # [offset, image]
    assert match.any(0).all()  # each image is itself moved, its edge repeated
    used = {offsets[k] for k in match.float().argmax(0).tolist()}
    assert used == set(offsets)  # every move in [-1, 1]^2 was drawn
    # on a corner: moved right and down by one, the top-left pixel fills a 2x2 block
    corner = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert torch.equal(_moved(corner)[0][offsets.index((1, 1)), 0, 0, :2, :2], torch.zeros(2, 2))


def test_flips_mirror_about_half_the_images():
    x = _dot(n=2000, at=(2, 1))
    out = train.augment(x, _target(random_flip=True, random_shift=0), torch.Generator().manual_seed(1))
    mirrored = (out[:, 0, 2, 6] > 0).float().mean().item()  # column 1 mirrored is column 6 of 8
    assert 0.45 < mirrored < 0.55


@pytest.mark.parametrize("trainer", ["standard", "dp-sgd"])
def test_training_sees_augmented_images(tmp_path, monkeypatch, trainer):
    """Each trainer's step hands the loss shifted copies of the members, not the members."""
    settings = config.resolve("smoke", runs_dir=str(tmp_path), iterations=3, random_shift=1, families="ddpm",
                              trainer=trainer)
    seen = []
    family = train.get_family("ddpm")
    real_loss = type(family).loss

    def spy(self, model, x0, t, noise):
        seen.append(x0.detach().clone())
        return real_loss(self, model, x0, t, noise)

    monkeypatch.setattr(type(family), "loss", spy)
    run = train.ensure(settings, progress_bar=False)
    members = run.images(run.split.members)
    batch = torch.cat(seen)
    if trainer == "standard":
        assert batch.shape[0] == 3 * settings.target.batch_size
    assert batch.shape[0] > 0
    exact = [(members == img).flatten(1).all(1).any().item() for img in batch]
    assert not all(exact)  # some images were moved
    copies, _ = _moved(members)  # [offset, member, ...]
    for img in batch:  # and each is some member moved by at most one pixel each way (edges repeated)
        assert (copies == img).flatten(2).all(2).any()


# ---- weight decay --------------------------------------------------------------------------------

def test_weight_decay_is_adamw_decoupled_decay():
    net = torch.nn.Linear(3, 1)
    assert type(train.optimizer_for(net, _target(weight_decay=0.0))) is torch.optim.Adam
    opt = train.optimizer_for(net, _target(weight_decay=0.1, lr=0.01))
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 0.1
    # with a zero gradient, AdamW's step is the decay alone: w <- w (1 - lr * wd)
    before = net.weight.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(net.weight.detach(), before * (1 - 0.01 * 0.1))


# ---- the run key ---------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", sorted(config.PROFILES))
def test_new_knobs_at_their_default_keep_every_stored_key(profile):
    """The hash as it was computed before the defenses' knobs existed (written out here)."""
    s = config.resolve(profile)
    old_target = {k: v for k, v in dataclasses.asdict(s.target).items()
                  if k not in ("checkpoint_every", "snapshot_every", "random_shift", "weight_decay",
                               "distill_samples", "distill_steps", *config.DP_KEYS)}
    before = stable_hash({"format": config.RUN_FORMAT, "data": dataclasses.asdict(s.data), "target": old_target})
    assert s.target_hash() == before


@pytest.mark.parametrize("change", [dict(random_shift=1), dict(weight_decay=0.01), dict(distill_samples=8)])
def test_each_defense_knob_away_from_its_default_is_a_new_run(change):
    assert config.resolve("smoke", **change).target_hash() != config.resolve("smoke").target_hash()


def test_distill_steps_count_only_for_a_student():
    assert config.resolve("smoke", distill_steps=7).target_hash() == config.resolve("smoke").target_hash()
    assert (config.resolve("smoke", distill_samples=8, distill_steps=7).target_hash()
            != config.resolve("smoke", distill_samples=8).target_hash())


@pytest.mark.parametrize("bad, message", [(dict(random_shift=-1), "random_shift"), (dict(random_shift=4), "half"),
                                          (dict(weight_decay=-0.1), "weight_decay"), (dict(weight_decay=1.5), "weight_decay"),
                                          (dict(distill_samples=-1), "distill_samples"), (dict(distill_steps=0), "distill")])
def test_bad_defense_knobs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        config.resolve("smoke", **bad)


# ---- distillation --------------------------------------------------------------------------------

def test_a_student_trains_on_its_teachers_samples_and_never_on_a_member(tmp_path, monkeypatch):
    settings = config.resolve("smoke", runs_dir=str(tmp_path), iterations=4, distill_samples=12, distill_steps=5,
                              families="ddpm")
    teacher = train.ensure(train.teacher_settings(settings), progress_bar=False)
    captured = {}
    real_train = train._train

    def spy(settings_, key, folder, fam, model, images, device, progress_bar):
        captured[key] = images.detach().clone()
        return real_train(settings_, key, folder, fam, model, images, device, progress_bar)

    monkeypatch.setattr(train, "_train", spy)
    student = train.ensure(settings, progress_bar=False)
    assert student.key != teacher.key and list(captured) == [student.key]
    trained_on = captured[student.key]
    expected = teacher.samples(12, seed=train.DISTILL_SEED, n_steps=5)
    assert torch.equal(trained_on.cpu(), expected)
    dataset_images = student.dataset.images
    members = dataset_images[torch.as_tensor(student.split.members)]
    assert not (trained_on[:, None] == members[None]).flatten(2).all(2).any()  # not one member among them
    for part in ("members", "nonmembers"):  # attacked on the same members and nonmembers
        assert np.array_equal(getattr(student.split, part), getattr(teacher.split, part))
    assert student.history["n_members"] == 12


def test_a_reference_model_cannot_be_distilled(tmp_path):
    settings = config.resolve("smoke", runs_dir=str(tmp_path), distill_samples=8)
    with pytest.raises(ValueError, match="reference"):
        train.run_dir(settings, reference=0)


# ---- early stopping ------------------------------------------------------------------------------

def test_patience_rule_stops_releases_the_best_and_can_run_to_the_end():
    its = [10, 20, 30, 40, 50, 60]
    rising = stopping_point(its, [5.0, 4.0, 3.0, 3.5, 3.6, 2.0], patience=2)
    assert (rising.released, rising.stopped_at) == (30, 50)  # stops before the late improvement at 60
    patient = stopping_point(its, [5.0, 4.0, 3.0, 3.5, 3.6, 2.0], patience=3)
    assert (patient.released, patient.stopped_at) == (60, None)
    falling = stopping_point(its, [6, 5, 4, 3, 2, 1], patience=1)
    assert (falling.released, falling.stopped_at) == (60, None)
    tie = stopping_point(its, [3.0, 3.0, 3.0, 1.0, 1.0, 1.0], patience=2)
    assert (tie.released, tie.stopped_at) == (10, 30)  # equal is not an improvement
    assert stopping_point([10], [1.0], patience=1).released == 10


@pytest.mark.parametrize("its, losses, patience, message", [
    ([10, 20], [1.0, 2.0], 0, "patience"), ([20, 10], [1.0, 2.0], 1, "order"), ([10, 20], [1.0], 1, "one loss"),
    ([10, 20], [1.0, float("nan")], 1, "finite"), ([], [], 1, "one loss")])
def test_patience_rule_refuses_bad_evaluations(its, losses, patience, message):
    with pytest.raises(ValueError, match=message):
        stopping_point(its, losses, patience)


def test_validation_loss_is_fixed_per_image_and_batch_independent(smoke_run):
    idx = smoke_run.split.subset("unused", 10)
    images = smoke_run.images(idx)
    one = early_stopping.validation_loss(smoke_run.model, smoke_run.family, images, idx, n_draws=3, batch_size=7)
    assert one == pytest.approx(early_stopping.validation_loss(smoke_run.model, smoke_run.family, images, idx,
                                                               n_draws=3, batch_size=64), rel=1e-5)
    # the draws are the image's own: the loss of two halves averages to the whole's
    halves = [early_stopping.validation_loss(smoke_run.model, smoke_run.family, images[s], idx[s], n_draws=3)
              for s in (slice(0, 5), slice(5, 10))]
    assert np.mean(halves) == pytest.approx(one, rel=1e-5)
    other_seed = early_stopping.validation_loss(smoke_run.model, smoke_run.family, images, idx, seed=1, n_draws=3)
    assert other_seed != pytest.approx(one, rel=1e-9)


def test_early_stop_evaluates_every_snapshot_on_held_out_images(smoke_run):
    stop = early_stopping.early_stop(smoke_run, patience=1, n_images=12, n_draws=2)
    assert stop.iterations == tuple(smoke_run.snapshot_iterations()) and len(stop.iterations) >= 2
    held_out = smoke_run.split.subset("unused", 12)
    assert not np.isin(held_out, np.r_[smoke_run.split.members, smoke_run.split.nonmembers]).any()
    direct = [early_stopping.validation_loss(smoke_run.model_at(i), smoke_run.family, smoke_run.images(held_out),
                                             held_out, 0, 2) for i in stop.iterations]
    np.testing.assert_allclose(stop.losses, direct, rtol=1e-6)
    assert stop.released == stopping_point(stop.iterations, direct, 1).released


def test_early_stop_needs_snapshots(tmp_path):
    run = train.ensure(config.resolve("smoke", runs_dir=str(tmp_path), iterations=4, snapshot_every=0,
                                      families="ddpm"), progress_bar=False)
    with pytest.raises(ValueError, match="snapshot"):
        early_stopping.early_stop(run, patience=1, n_images=4)


def test_a_released_snapshot_is_scored_and_sampled_as_that_iteration(smoke_run):
    """``Run.at``: the early-stopped model's scores are the snapshot's, keyed as score_split keys
    that iteration, and its samples are not the final model's."""
    from miakit.attacks import scoring

    iteration = smoke_run.snapshot_iterations()[0]
    assert iteration < smoke_run.settings.target.iterations
    view = smoke_run.at(iteration)
    assert view.released == iteration and smoke_run.released is None
    by_view = scoring.score_split(view, "loss", progress_bar=False)
    by_iteration = scoring.score_split(smoke_run, "loss", progress_bar=False, iteration=iteration)
    final = scoring.score_split(smoke_run, "loss", progress_bar=False)
    np.testing.assert_array_equal(by_view.scores["members_test"], by_iteration.scores["members_test"])
    assert not np.array_equal(by_view.scores["members_test"], final.scores["members_test"])
    # its samples are cached apart from the final model's (nothing generated here: other tests count the files)
    payload = {"n": 4, "steps": 5, "seed": 0, "sampler": smoke_run.family.sampler}
    assert view.cache_stem("samples", payload, {}) != smoke_run.cache_stem("samples", payload, {})
    assert view.cache_stem("samples", payload, {}) == smoke_run.cache_stem("samples", {**payload, "iteration": iteration}, {})
    assert smoke_run.at(smoke_run.settings.target.iterations) is smoke_run
    with pytest.raises(ValueError, match="released"):
        scoring.score_split(view, "loss", progress_bar=False, iteration=smoke_run.settings.target.iterations)
    with pytest.raises(ValueError, match="released"):
        view.model_at(smoke_run.settings.target.iterations)
