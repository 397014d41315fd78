"""Fire an action (a signal to this process) at a chosen point inside a chosen training step.

Shared by the in-process Ctrl-C tests and the SIGKILL subprocesses of ``test_resume.py``. The
points cover a step from its batch draw to its EMA update, and the checkpoint write after it:

- ``draw``: the (t, noise) draw of the step's batch (after the batch's images were drawn),
- ``forward``: the loss's forward pass,
- ``backward``: inside the backward pass (a hook on the loss),
- ``update``: after the optimizer's update, before the EMA update,
- ``write``: while the checkpoint's temporary file is written, before it replaces the old one.
"""
import os
import signal

import torch
from torch.optim.swa_utils import AveragedModel

from miakit import diffusion
from miakit.core import store

POINTS = ("draw", "forward", "backward", "update", "write")


def install(monkeypatch, point: str, iteration: int, sig: int) -> None:
    """Send ``sig`` to this process once, at ``point`` of training iteration ``iteration``
    (0-based; for ``write``: the first checkpoint write after it)."""
    if point not in POINTS:
        raise ValueError(point)
    state = {"done": 0, "fired": False}

    def fire():
        if not state["fired"] and state["done"] >= iteration:
            state["fired"] = True
            os.kill(os.getpid(), sig)

    real_update = AveragedModel.update_parameters

    def update(self, model):
        if point == "update":
            fire()
        real_update(self, model)
        state["done"] += 1

    monkeypatch.setattr(AveragedModel, "update_parameters", update)
    if point == "draw":
        real = diffusion.DDPM.sample_train_t

        def draw(self, *args, **kwargs):
            out = real(self, *args, **kwargs)
            fire()
            return out

        monkeypatch.setattr(diffusion.DDPM, "sample_train_t", draw)
    elif point in ("forward", "backward"):
        real_loss = diffusion.DDPM.loss

        def loss(self, *args, **kwargs):
            if point == "forward":
                fire()
            out = real_loss(self, *args, **kwargs)
            if point == "backward" and out.requires_grad:
                out.register_hook(lambda grad: (fire(), grad)[1])
            return out

        monkeypatch.setattr(diffusion.DDPM, "loss", loss)
    elif point == "write":
        real_atomic = store._atomic

        def atomic(path, content):
            if path.name.startswith("checkpoint") and not state["fired"] and state["done"] >= iteration:
                # killed with half of the checkpoint in the writer's temporary file
                tmp = path.parent / f".{path.name}.{os.getpid()}.0000.tmp"
                with open(tmp, "xb") as fh:
                    fh.write(content[: len(content) // 2])
                    fh.flush()
                fire()
            real_atomic(path, content)

        monkeypatch.setattr(store, "_atomic", atomic)


class _Patch:
    """A minimal stand-in for pytest's monkeypatch in a subprocess."""

    def setattr(self, owner, name, value):
        setattr(owner, name, value)


def main() -> None:
    """``python interrupts.py POINT ITERATION RUNS_DIR TRAINER``: train the smoke target of
    ``test_resume.py`` and SIGKILL this process at POINT of ITERATION."""
    import sys

    from miakit.training import train

    sys.path.insert(0, os.path.dirname(__file__))
    from test_resume import settings_for

    point, iteration, runs, trainer = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(2)  # as conftest.py: another thread count rounds differently
    install(_Patch(), point, iteration, signal.SIGKILL)
    train.ensure(settings_for(runs, trainer), progress_bar=False)


if __name__ == "__main__":
    main()
