"""No code path that runs a model mixes devices (CUDA bugs caught on the CPU).

PyTorch's ``meta`` device refuses a tensor of another device exactly as CUDA does ("Tensor on
device cpu is not on the expected device meta!"; 0-dim CPU tensors are allowed, as on CUDA), but
it holds no data: reading a value (``.item()``, ``.cpu()``) raises too. So each function runs
with the model on ``meta`` and must either finish or stop at such a read, after the model ran
(``reaches_past_the_model``), never at a device mismatch. Each test here failed on the code
before its fix (the module's previous version run in its place).
"""
import contextlib

import numpy as np
import pytest
import torch

from miakit import attacks, diffusion
from miakit.training import clipping, dp_sgd
from miakit.core import config
from miakit.diffusion import unet as unets
from miakit.evidence import speed
from miakit.attacks import base as attacks_base, loss as attacks_loss

META = torch.device("meta")
MIXING = ("is not on the expected device", "on the same device", "device type")  # PyTorch's mismatch wordings


def unet(family_name="ddpm", train=False):
    torch.manual_seed(0)
    net = unets.build_unet("tiny", family_name, 8, 1)
    return dp_sgd.without_dropout(net.train()) if train else net.eval()


def images(n=2):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def calls(model) -> list:
    """A list that grows by one at every forward pass of ``model``."""
    seen = []
    model.register_forward_hook(lambda *_: seen.append(1))
    return seen


def reaches_past_the_model(fn, seen: list):
    """``fn()``'s result, or None when it stopped at reading a meta tensor's value; fails on a
    device mismatch, or when the model was never called."""
    try:
        out = fn()
    except (RuntimeError, NotImplementedError) as err:
        message = str(err)
        assert not any(m in message for m in MIXING), f"tensors on two devices: {message}"
        assert "meta" in message, message  # "Cannot copy out of meta tensor", ".item() ... on meta tensors"
        out = None
    assert seen, "the model was never called"
    return out


# ---------------------------------------------------------------- chapter 03: the paper loop (P2)

@pytest.mark.parametrize("family_name", ["ddpm", "vesde"])  # positional and Fourier time embeddings
def test_paper_likelihood_feeds_the_model_on_its_device(family_name):
    """The paper loop's state lives in numpy on the CPU: each evaluation must move it (and the
    time and the probe) to the model's device."""
    net = unet(family_name).to(META)
    seen = calls(net)
    reaches_past_the_model(lambda: speed.paper_likelihood(net, diffusion.family(family_name), images(1)), seen)


# ---------------------------------------------------------- chapter 05: the gradient checks (P3)

def test_book_keeping_per_example_gradients_stay_on_the_model_s_device():
    """``BookKeeping.per_example`` weighs the clipped sum one example at a time: the one-hot
    weights must be on the gradients' device."""
    net, fam = unet(train=True).to(META), diffusion.family("ddpm")
    x = images(4).to(META)
    t, noise = fam.sample_train_t(4, torch.Generator().manual_seed(0), META), torch.randn(x.shape).to(META)
    bk = clipping.BookKeeping(net, 2)
    try:
        norms, grads = bk.per_example(bk.forward(lambda: fam.loss(net, x, t, noise)))
    finally:
        bk.close()
    assert norms.device == META and norms.shape == (2,)
    assert all(g.device == META and g.shape[0] == 2 for g in grads.values())


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # opacus' hooks on an input without gradient
@pytest.mark.parametrize("method", ["book-keeping", "opacus hooks"])
def test_per_sample_gradient_check_draws_on_the_examples_device(method):
    """The check draws t and the noise from a CPU generator (the same on every device) and moves
    them to the examples' device."""
    net = unet(train=True).to(META)
    seen = calls(net)
    reaches_past_the_model(lambda: dp_sgd.per_sample_gradient_mismatches(
        net, diffusion.family("ddpm"), images(2).to(META), 2, method=method), seen)


def test_the_gradient_check_computes_in_full_float32(monkeypatch):
    """TF32 (on for GPU matmuls once ``unets.pick_device`` picked an Ampere GPU, on for cuDNN
    convolutions by default) would make two correct gradients differ at the check's tolerance:
    the check turns it off while it runs and restores the flags after."""
    fam = diffusion.family("ddpm")
    during = []
    real_loss = fam.loss

    def loss(*args):
        during.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real_loss(*args)

    monkeypatch.setattr(fam, "loss", loss)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as on an Ampere GPU
    try:
        assert dp_sgd.per_sample_gradient_mismatches(unet(train=True), fam, images(2)) == []
        after = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert during and set(during) == {(False, False)}
    assert after == (True, True)


# ------------------------------------------------------------ the attacks' speed (benchmarks)

def test_raw_throughput_feeds_the_model_on_its_device():
    """The images may be on the CPU (the attacks move each batch); the raw forward pass must see
    them, and the steps, on the model's device."""
    net = unet().to(META)
    seen = calls(net)
    rate, batch = reaches_past_the_model(
        lambda: speed.raw_throughput(net, images(), 500, batch_sizes=(2,), repeats=1), seen)
    assert rate > 0 and batch == 2


# ---------------------------------------- guards: code that runs on CUDA now and must keep doing so

@pytest.mark.parametrize("family_name", sorted(diffusion.FAMILIES))
def test_samplers_draw_on_the_cpu_and_run_on_the_device(family_name):
    """Chapter 05's samples: a CPU generator (the same images on every device), the chain on the
    model's device."""
    fam = diffusion.family(family_name)
    x = fam.sample(unet(family_name).to(META), (2, 1, 8, 8), torch.Generator().manual_seed(0), 3, META)
    assert x.device == META and x.shape == (2, 1, 8, 8)


@pytest.mark.parametrize("name", attacks.defaults("later_attacks"))
def test_attacks_move_each_batch_to_the_model_s_device(monkeypatch, name):
    """Chapter 06's attacks on CPU images and a model elsewhere (autocast, which has no meta
    kind, left out)."""
    monkeypatch.setattr(attacks_base, "autocast", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(attacks_loss, "autocast", lambda device: contextlib.nullcontext())
    net = unet().to(META)
    seen = calls(net)
    grid = attacks.get(name).grid(config.resolve("smoke"))[:2]
    context = attacks.Context(ids=np.arange(2), references=(net,))
    reaches_past_the_model(lambda: attacks.score(name, net, diffusion.family("ddpm"), images(), grid, context), seen)
