"""Interrupted training resumes bit-identically, for the ordinary and the private trainer.

Ctrl-C (SIGINT, sent to this process) and SIGKILL (a subprocess killed) at several points
inside a step (``tests/interrupts.py``): the resumed run's final weights (model and EMA) equal an
uninterrupted run's bit for bit, and a private run spends the same epsilon.
"""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miakit.core import config, store
from miakit.training import train

import interrupts

HERE = Path(__file__).resolve().parent
ITERATION = 13  # checkpoints every 5 of 20 iterations: a SIGKILL here loses 3 steps
pytestmark = [pytest.mark.filterwarnings("ignore:Optimal order is the"), pytest.mark.heavy]  # kills and resumes trainings


def settings_for(runs, trainer):
    # the RDP accountant (above epsilon 200) calibrates fastest
    extra = dict(trainer="dp-sgd", dp_epsilon=300, batch_size=8) if trainer == "dp-sgd" else {}
    return config.resolve("smoke", runs_dir=str(runs), iterations=20, checkpoint_every=5, snapshot_every=0, **extra)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    return {trainer: train.ensure(settings_for(root / trainer, trainer), progress_bar=False)
            for trainer in ("standard", "dp-sgd")}


def assert_same_result(reference, resumed):
    want = store.read_tensors(reference.dir / train.FINAL)
    got = store.read_tensors(resumed.dir / train.FINAL)
    assert want.keys() == got.keys()
    different = [k for k in want if not torch.equal(want[k], got[k])]
    assert not different, f"{len(different)} of {len(want)} tensors differ, e.g. {different[:3]}"
    assert reference.history["loss"] == resumed.history["loss"]
    if "dp" in reference.history:
        assert resumed.history["dp"]["epsilon_spent"] == reference.history["dp"]["epsilon_spent"]


@pytest.mark.parametrize("trainer", ["standard", "dp-sgd"])
@pytest.mark.parametrize("point", ["draw", "forward", "backward", "update"])
def test_ctrl_c_inside_a_step_resumes_bit_identically(tmp_path, monkeypatch, references, trainer, point):
    s = settings_for(tmp_path, trainer)
    with monkeypatch.context() as patch:
        interrupts.install(patch, point, ITERATION, signal.SIGINT)
        with pytest.raises(KeyboardInterrupt, match="interrupted after iteration 14"):
            train.ensure(s, progress_bar=False)
    folder = train.run_dir(s)
    assert (folder / train.CHECKPOINT).exists() and not (folder / train.FINAL).exists()
    resumed = train.ensure(s, progress_bar=False)
    assert resumed.history["resumed_from"] == ITERATION + 1  # the interrupted step was finished, not lost
    assert_same_result(references[trainer], resumed)


@pytest.mark.parametrize("trainer", ["standard", "dp-sgd"])
@pytest.mark.parametrize("point", ["draw", "backward", "write"])
def test_sigkill_inside_a_step_resumes_bit_identically(tmp_path, references, trainer, point):
    killed = subprocess.run([sys.executable, str(HERE / "interrupts.py"), point, str(ITERATION), str(tmp_path), trainer],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    s = settings_for(tmp_path, trainer)
    folder = train.run_dir(s)
    orphans = list(folder.glob(".*.tmp"))
    assert bool(orphans) == (point == "write")  # killed mid-write: the temporary file is left behind
    resumed = train.ensure(s, progress_bar=False)
    assert resumed.history["resumed_from"] == 10  # the last checkpoint that was completely written
    assert not list(folder.glob(".*.tmp"))  # and cleaned when the run is opened again
    assert_same_result(references[trainer], resumed)


def test_the_comparison_sees_a_resume_that_is_not_exact(tmp_path, monkeypatch, references):
    """Resuming without the checkpointed generator state (the old Ctrl-C handler's fault: the
    interrupted step's draws were already taken) must be caught by ``assert_same_result``."""
    s = settings_for(tmp_path, "standard")
    with monkeypatch.context() as patch:
        interrupts.install(patch, "forward", ITERATION, signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            train.ensure(s, progress_bar=False)
    real_load = train._load_checkpoint

    def load_and_draw(path, key, model, ema_model, stepper, gen):
        out = real_load(path, key, model, ema_model, stepper, gen)
        torch.rand(1, generator=gen)  # one draw too many, as if the state were saved mid-step
        return out

    monkeypatch.setattr(train, "_load_checkpoint", load_and_draw)
    resumed = train.ensure(s, progress_bar=False)
    with pytest.raises(AssertionError, match="tensors differ"):
        assert_same_result(references["standard"], resumed)


def test_a_private_run_records_its_accountant_in_every_checkpoint(tmp_path, monkeypatch):
    s = settings_for(tmp_path, "dp-sgd")
    with monkeypatch.context() as patch:
        interrupts.install(patch, "forward", ITERATION, signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            train.ensure(s, progress_bar=False)
    meta = store.read_metadata(train.run_dir(s) / train.CHECKPOINT)
    history = json.loads(meta["step.accountant"])
    assert sum(steps for _, _, steps in history) == ITERATION + 1
