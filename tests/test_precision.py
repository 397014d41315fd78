"""Mixed precision chosen by the hardware: float32 on the CPU, bf16 with TF32 from Ampere on,
fp16 with a gradient scaler on older GPUs (a T4); the choice is recorded in the run."""
import json

import numpy as np
import torch

from miakit.core import config
from miakit import diffusion
from miakit.diffusion import unet
from miakit.training import train


def test_the_precision_follows_the_hardware():
    cuda = torch.device("cuda")
    assert unet.precision(torch.device("cpu")) is unet.FLOAT32
    assert unet.precision(cuda, capability=(7, 5), bf16=False) is unet.FP16  # T4
    assert unet.precision(cuda, capability=(7, 0), bf16=True) is unet.FP16  # emulated bf16 is not native
    assert unet.precision(cuda, capability=(8, 0), bf16=True) is unet.BF16  # A100
    assert unet.precision(cuda, capability=(9, 0), bf16=True) is unet.BF16  # H100
    assert unet.FP16.scaler and not unet.BF16.scaler and unet.BF16.tf32 and not unet.FP16.tf32


def step_for(precision, seed=0):
    s = config.resolve("smoke", batch_size=8)
    torch.manual_seed(seed)
    net = unet.build_unet("tiny", "ddpm", 8, 1)
    members = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return train.StandardStep(s, diffusion.family("ddpm"), net, members, torch.Generator().manual_seed(2),
                              torch.device("cpu"), precision=precision)


def test_the_fp16_step_scales_the_loss_keeps_the_scale_in_checkpoints_and_trains():
    """The scaler path (what a T4 runs), exercised on the CPU's fp16 autocast."""
    step = step_for(unet.FP16)
    before = [p.detach().clone() for p in step.model.parameters()]
    losses = [step.step() for _ in range(3)]
    assert all(np.isfinite(losses)) and step.scaler is not None
    assert any(not torch.equal(a, b) for a, b in zip(before, step.model.parameters()))  # it trained
    _, meta = step.state()
    saved = json.loads(meta["grad_scaler"])
    assert saved["scale"] > 0 and saved["_growth_tracker"] == 3
    resumed = step_for(unet.FP16)
    resumed.load_state({}, meta)
    assert resumed.scaler.state_dict() == step.scaler.state_dict()
    assert step.record() == {"precision": unet.FP16.name}
    plain = step_for(unet.FLOAT32)
    assert plain.scaler is None and plain.state() == ({}, {}) and np.isfinite(plain.step())


def test_a_run_records_its_precision(tmp_path):
    run = train.ensure(config.resolve("smoke", runs_dir=str(tmp_path), iterations=2), progress_bar=False)
    assert run.history["precision"] == "float32"
