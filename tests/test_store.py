"""The run store cannot lie: keys that cover what determines a result, checked files, locks,
no orphans, nothing non-finite, and a read-only store that still answers."""
import multiprocessing
import os

import numpy as np
import pytest
import torch

from miakit.core import config, data, store
from miakit import diffusion
from miakit.diffusion import unet
from miakit.training import train


def smoke(tmp_path, **kw):
    return config.resolve("smoke", **{"runs_dir": str(tmp_path), "iterations": 4, "checkpoint_every": 2,
                                      "snapshot_every": 0, **kw})


def write_digits_folder(folder, n=70, shift=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pixels = data.load("digits", 8).images[:n, 0]
    for i, img in enumerate(pixels):
        arr = ((((img.numpy() + 1) / 2 * 255).round().astype(np.int64) + shift) % 256).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")


# --- the run key ------------------------------------------------------------------------------

def test_run_key_follows_the_member_images_not_the_folder_name(tmp_path):
    images = tmp_path / "faces"
    write_digits_folder(images)
    s = config.resolve("smoke", runs_dir=str(tmp_path / "runs"), dataset=f"folder:{images}", n_members=16,
                       n_nonmembers=40)
    before = train.run_dir(s)
    write_digits_folder(images, shift=7)  # same folder, same count, other pixels
    assert train.run_dir(s) != before


@pytest.mark.parametrize("change", ["family", "preset", "format", "members", "nonmember", "dp-clipping",
                                    "dp-unclipped"])
def test_run_key_changes_with_everything_that_determines_the_weights(tmp_path, monkeypatch, change):
    s = smoke(tmp_path)
    if change == "dp-clipping":  # a private run: how its gradients are clipped
        s = config.resolve("smoke", runs_dir=str(tmp_path), trainer="dp-sgd", dp_epsilon=10)
    if change == "dp-unclipped":  # the DP loop's unclipped arm: how its gradient is formed
        s = config.resolve("smoke", runs_dir=str(tmp_path), trainer="dp-sgd", dp_max_grad_norm=float("inf"))
    ds = data.load("digits", 8)
    before = train.run_dir(s, ds)
    if change == "family":  # the family's own hyperparameters (not a setting)
        monkeypatch.setattr(diffusion.DDPM.__init__, "__defaults__", (1000, 0.1, 19.0))
    elif change == "preset":  # what the preset resolves to
        monkeypatch.setitem(unet.PRESETS, "tiny", unet.Preset((16, 32), 2, (), 8, 0.0))
    elif change == "format":
        monkeypatch.setattr(config, "RUN_FORMAT", config.RUN_FORMAT + 1)
    elif change == "dp-clipping":
        monkeypatch.setattr(train, "DP_CLIPPING", "opacus per-sample gradients")
    elif change == "dp-unclipped":
        monkeypatch.setattr(train, "DP_UNCLIPPED", "book-keeping")
    else:
        split = train._split_for(s, len(ds))
        which = split.members[0] if change == "members" else split.nonmembers[0]
        images = ds.images.clone()
        images[which, 0, 0, 0] += 0.5
        ds = data.Dataset(ds.name, images, ds.labels)
    after = train.run_dir(s, ds)
    assert (after == before) == (change == "nonmember"), change  # a nonmember does not shape the weights


def test_score_caches_follow_the_scored_images(smoke_run):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(3.0)}

    part = {"nonmembers_test": smoke_run.split.nonmembers_test}
    smoke_run.cached("probe", {"a": 1}, part, compute)
    smoke_run.cached("probe", {"a": 1}, part, compute)
    assert len(calls) == 1  # cached
    images = smoke_run.dataset.images.clone()
    images[smoke_run.split.nonmembers_test[0]] *= 0.5
    other = train.Run(smoke_run.settings, smoke_run.dir, smoke_run.family, smoke_run.model,
                      data.Dataset("digits", images, smoke_run.dataset.labels), smoke_run.split)
    other.cached("probe", {"a": 1}, part, compute)
    assert len(calls) == 2  # a nonmember image changed: recomputed, not reused


# --- files ------------------------------------------------------------------------------------

def test_a_flipped_bit_is_caught_by_the_checksum(tmp_path):
    path = tmp_path / "t.safetensors"
    store.write_tensors(path, {"w": torch.arange(64.0)})
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # one bit of the last float
    path.write_bytes(bytes(raw))
    with pytest.raises(store.CorruptRunError, match="checksum"):
        store.read_tensors(path)


def test_a_file_without_checksum_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "t.safetensors"))
    with pytest.raises(store.CorruptRunError, match="no checksum"):
        store.read_tensors(tmp_path / "t.safetensors")


def test_non_finite_tensors_are_never_written(tmp_path):
    with pytest.raises(store.NonFiniteError, match="'w'"):
        store.write_tensors(tmp_path / "t.safetensors", {"w": torch.tensor([1.0, float("nan")])})
    assert not list(tmp_path.iterdir())  # neither the file nor a temporary one


def test_orphans_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = multiprocessing.get_context("spawn").Process(target=os.getpid)
    dead.start()
    dead.join()
    orphan = tmp_path / f".final.safetensors.{dead.pid}.abcd1234.tmp"
    live = tmp_path / f".final.safetensors.{os.getpid()}.abcd1234.tmp"
    orphan.write_bytes(b"x" * 10)
    live.write_bytes(b"x")
    assert store.clean_orphans(tmp_path) == [orphan]
    assert live.exists() and not orphan.exists()


def test_writes_are_synced_before_they_replace(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    store.write_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(2)})
    store.write_json(tmp_path / "x.json", {"a": 1})
    assert events[:2] == ["fsync", "replace"] and events.count("replace") == 2
    assert events.index("fsync", 2) < events.index("replace", 2)




def test_a_read_only_store_still_returns_results_with_a_warning(smoke_run, monkeypatch):
    def refuse(path, arrays):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(train, "write_arrays", refuse)
    with pytest.warns(UserWarning, match="read-only"):
        out = smoke_run.cached("probe-ro", {"b": 2}, {}, lambda: {"x": np.ones(2)})
    assert np.array_equal(out["x"], np.ones(2))


# --- locks ------------------------------------------------------------------------------------

def _ensure_in_child(runs_dir, queue):
    torch.set_num_threads(1)
    from miakit.core import config as c
    from miakit.training import train as t

    calls = []
    real = t._train
    t._train = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    run = t.ensure(c.resolve("smoke", runs_dir=runs_dir, iterations=30, checkpoint_every=10, snapshot_every=0),
                   progress_bar=False)
    queue.put((len(calls), str(run.dir)))


@pytest.mark.heavy
def test_two_processes_train_a_run_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ensure_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(n for n, _ in results) == [0, 1]  # one trained, the other waited and loaded
    assert len({d for _, d in results}) == 1
    assert not list(tmp_path.rglob(".*.tmp"))


# --- training ---------------------------------------------------------------------------------

def test_divergence_stops_training_and_saves_nothing_non_finite(tmp_path, monkeypatch):
    # lr is refused above 1 before anything runs (test_integrity), and with gradient clipping the
    # largest allowed lr does not diverge in 20 steps: the loss turns inf at the 8th step instead
    real, calls = diffusion.DDPM.loss, []

    def exploding(self, *args, **kwargs):
        calls.append(1)
        out = real(self, *args, **kwargs)
        return out * float("inf") if len(calls) >= 8 else out

    monkeypatch.setattr(diffusion.DDPM, "loss", exploding)
    s = smoke(tmp_path, warmup=0, iterations=20, checkpoint_every=5)
    with pytest.raises(train.TrainingDiverged, match=r"became (nan|inf) at iteration \d+.*Lower the parameter lr.*"
                                                     r"new run starts from iteration 0"):
        train.ensure(s, progress_bar=False)
    folder = train.run_dir(s)
    assert not (folder / train.FINAL).exists()
    assert [p.name for p in folder.rglob("*.safetensors")] == [train.CHECKPOINT]  # the step-5 one, all finite
    store.read_tensors(folder / train.CHECKPOINT)


def test_nan_scores_name_the_image(smoke_run, monkeypatch):
    from miakit import attacks

    real = smoke_run.family.loss

    def poisoned(model, x0, t, noise):
        out = real(model, x0, t, noise)
        return torch.where(x0.flatten(1)[:, 5] == x0.flatten(1)[:, 5].max(), float("nan"), out)

    monkeypatch.setattr(smoke_run.family, "loss", poisoned)
    idx = smoke_run.split.members_test
    x = smoke_run.images(idx)
    with pytest.raises(attacks.NonFiniteScore, match=r"dataset indices \[\d+"):
        attacks.loss_scores(smoke_run.model, smoke_run.family, x, [10], ids=idx, progress_bar=False)
