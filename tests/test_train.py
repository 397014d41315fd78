import json

import pytest
import torch

from miakit.core import config, store
from miakit.training import train


def settings_in(tmp_path, **kw):
    return config.resolve("smoke", **{"runs_dir": str(tmp_path), "iterations": 20, "checkpoint_every": 5, **kw})


def final_weights(run_folder):
    return store.read_tensors(run_folder / train.FINAL)


def test_ensure_trains_once_then_loads(tmp_path, monkeypatch):
    s = settings_in(tmp_path)
    run = train.ensure(s, progress_bar=False)
    assert (run.dir / train.FINAL).exists() and not (run.dir / train.CHECKPOINT).exists()
    assert len(run.history["loss"]) == 20
    assert json.loads((run.dir / "config.json").read_text())["run_key"] == run.key == run.dir.name.rsplit("-", 1)[1]

    def no_training(*args, **kwargs):
        raise AssertionError("ensure retrained a finished run")

    monkeypatch.setattr(train, "_train", no_training)
    again = train.ensure(s, progress_bar=False)
    assert again.dir == run.dir
    for a, b in zip(run.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def crash_on_step(monkeypatch, n):
    """Make the n-th training step raise RuntimeError; returns the real step."""
    real_step = train.StandardStep.step
    calls = []

    def crashing_step(self):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(train.StandardStep, "step", crashing_step)
    return real_step


def test_resume_after_an_exception_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    """An exception inside a step (not Ctrl-C: see test_resume.py) loses the steps since the last
    checkpoint and nothing else."""
    reference = train.ensure(settings_in(tmp_path / "ref"), progress_bar=False)
    s = settings_in(tmp_path / "crash")
    real_step = crash_on_step(monkeypatch, 14)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.ensure(s, progress_bar=False)
    folder = train.run_dir(s)
    assert (folder / train.CHECKPOINT).exists() and not (folder / train.FINAL).exists()
    monkeypatch.setattr(train.StandardStep, "step", real_step)
    resumed = train.ensure(s, progress_bar=False)
    assert resumed.history["resumed_from"] == 10
    want, got = final_weights(reference.dir), final_weights(resumed.dir)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_truncated_checkpoint_is_a_clear_error_and_changes_nothing(tmp_path, monkeypatch):
    s = settings_in(tmp_path)
    crash_on_step(monkeypatch, 7)
    with pytest.raises(RuntimeError):
        train.ensure(s, progress_bar=False)
    checkpoint = train.run_dir(s) / train.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    before = sorted(p.name for p in train.run_dir(s).iterdir())
    with pytest.raises(store.CorruptRunError, match="truncated"):
        train.ensure(s, progress_bar=False)
    assert sorted(p.name for p in train.run_dir(s).iterdir()) == before
    assert checkpoint.stat().st_size == 100


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    s = settings_in(tmp_path)
    other = train.ensure(settings_in(tmp_path, lr=0.01), progress_bar=False)
    folder = train.run_dir(s)
    folder.mkdir(parents=True)
    (folder / train.CHECKPOINT).write_bytes((other.dir / train.FINAL).read_bytes())
    with pytest.raises(store.CorruptRunError, match="belongs to run"):
        train.ensure(s, progress_bar=False)
    assert not (folder / train.FINAL).exists()


def test_samples_are_cached(smoke_run):
    a = smoke_run.samples(3, n_steps=4)
    assert a.shape == (3, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, smoke_run.samples(3, n_steps=4))
    assert len(list(smoke_run.dir.glob("samples-*.safetensors"))) == 1


def test_store_round_trip_and_atomicity(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.uint8)}
    store.write_tensors(tmp_path / "t.safetensors", tensors, {"k": "v"})
    back = store.read_tensors(tmp_path / "t.safetensors")
    assert all(torch.equal(tensors[k], back[k]) for k in tensors)
    store.write_json(tmp_path / "x.json", {"n": 1})
    assert store.read_json(tmp_path / "x.json") == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors", "x.json"]  # no temp files left
    (tmp_path / "bad.json").write_text('{"n": ')
    with pytest.raises(store.CorruptRunError, match="truncated"):
        store.read_json(tmp_path / "bad.json")


def test_snapshots_hold_the_ema_weights_a_shorter_run_ends_with(tmp_path):
    run = train.ensure(settings_in(tmp_path, snapshot_every=5), progress_bar=False)
    assert run.snapshot_iterations() == [5, 10, 15, 20]
    assert run.model_at(20) is run.model
    shorter = train.ensure(settings_in(tmp_path / "short", iterations=10), progress_bar=False)
    for a, b in zip(run.model_at(10).parameters(), shorter.model.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(run.model_at(5).parameters(), shorter.model.parameters()))
    with pytest.raises(FileNotFoundError, match="no snapshot at iteration 7"):
        run.model_at(7)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_the_multi_tensor_adam_step_gives_the_per_tensor_loop_s_weights_bit_for_bit(weight_decay):
    """``optimizer_for`` takes torch's foreach step (faster on a CPU); ten steps of the book's UNet
    land on exactly the weights of the per-tensor loop (Adam, and AdamW for the weight-decay defense),
    so the runs it trains are the runs the book trained before."""
    import dataclasses

    import torch

    from miakit.diffusion.unet import build_unet

    target = dataclasses.replace(config.resolve("cpu").target, weight_decay=weight_decay)
    weights = {}
    for foreach in (True, False):
        torch.manual_seed(0)
        net = build_unet("tiny", "ddpm", 8, 1)
        initial = net.conv_in.weight.detach().clone()
        opt = train.optimizer_for(net, target)
        assert opt.defaults["foreach"] is True
        if not foreach:
            opt = type(opt)(net.parameters(), lr=target.lr, weight_decay=weight_decay, foreach=False)
        gen = torch.Generator().manual_seed(1)
        for _ in range(10):
            x, t = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 1000, (16,), generator=gen)
            opt.zero_grad()
            (net(x, t).sample - x).square().mean().backward()
            opt.step()
        weights[foreach] = [p.detach().clone() for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights[True], weights[False]))
    assert not torch.equal(net.conv_in.weight, initial)  # the steps moved the weights
