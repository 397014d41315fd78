"""The denoiser: diffusers' ``UNet2DModel`` in three sizes, an EMA of its weights, and the device.

Presets (channels per resolution level, res blocks per level, where attention sits):

- ``tiny``  (16, 32), 1 block, no attention — the ``cpu`` and ``smoke`` profiles (~0.16M
  parameters at 8x8).
- ``small`` (32, 64, 64), 1 block, attention at the deepest level (~1.1M).
- ``medium`` (64, 128, 128), 2 blocks, attention at the deepest level — the ``gpu`` profile's
  CIFAR-10 32x32 targets (~6M parameters; book/reproduce.md gives the hours per chapter).
- ``paper`` (128, 256, 256, 256), 2 blocks, attention at 16x16, dropout 0.1 — the paper's
  score_sde DDPM configuration for 64x64 images (nf=128, ch_mult (1, 2, 2, 2)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.swa_utils import AveragedModel


@dataclass(frozen=True)
class Preset:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    attention: tuple[int, ...] | str  # resolutions with attention, or "deepest"
    norm_num_groups: int
    dropout: float


PRESETS: dict[str, Preset] = {
    "micro": Preset((8, 16), 1, (), 4, 0.0),  # the defenses' smaller model on the cpu profile
    "tiny": Preset((16, 32), 1, (), 8, 0.0),
    "small": Preset((32, 64, 64), 1, "deepest", 8, 0.0),
    "medium": Preset((64, 128, 128), 2, "deepest", 32, 0.1),
    "paper": Preset((128, 256, 256, 256), 2, (16,), 32, 0.1),
}

def time_embedding(family: str) -> str:
    """How a UNet for ``family`` embeds its timestep: the family's own ``time_embedding`` (the
    discrete families and the VP SDE, queried at t * 999 as score_sde's DDPM++, use sinusoids; the
    VE SDE is queried at sigma(t) with Gaussian Fourier features)."""
    from miakit.diffusion import FAMILIES

    if family not in FAMILIES:
        raise ValueError(f"unknown diffusion family {family!r}; available: {sorted(FAMILIES)}")
    return FAMILIES[family].time_embedding


def architecture(preset: str, family: str, resolution: int, channels: int) -> dict:
    """The ``UNet2DModel`` arguments of ``preset`` for ``family`` at ``resolution``: what the
    preset resolves to, and part of the key of every run trained with it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    check_resolution(preset, resolution)
    p = PRESETS[preset]
    levels = len(p.block_out_channels)
    level_res = [resolution // 2 ** i for i in range(levels)]
    attn = [i == levels - 1 for i in range(levels)] if p.attention == "deepest" else \
        [r in p.attention for r in level_res]
    return dict(
        sample_size=resolution, in_channels=channels, out_channels=channels,
        block_out_channels=list(p.block_out_channels), layers_per_block=p.layers_per_block,
        down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        norm_num_groups=p.norm_num_groups, dropout=p.dropout,
        time_embedding_type=time_embedding(family),
    )


def check_resolution(preset: str, resolution: int) -> None:
    """Raise unless ``preset`` accepts ``resolution`` (it halves the image once per level)."""
    levels = len(PRESETS[preset].block_out_channels)
    if resolution < 2 ** (levels - 1) or resolution % (2 ** (levels - 1)):
        raise ValueError(f"preset {preset!r} halves the image {levels - 1} times: resolution "
                         f"{resolution} must be a positive multiple of {2 ** (levels - 1)}")


def build_unet(preset: str, family: str, resolution: int, channels: int):
    """A fresh ``UNet2DModel`` of ``preset`` size for ``family`` at ``resolution``."""
    from diffusers import UNet2DModel

    arch = architecture(preset, family, resolution, channels)
    return UNet2DModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bias_corrected_ema_fn(decay: float):
    """The multi-tensor update of a bias-corrected exponential moving average.

    After n updates with weights w_1..w_n the average is
    sum_k (1 - d) d^(n-k) w_k / (1 - d^n): the weights sum to one and the starting point (the
    initial, untrained network) carries none. A plain EMA started at w_1 keeps d^(n-1) of it
    (37% after 200 updates at d = 0.995), so an early snapshot would be part untrained network
    and "longer training leaks more" would hold by construction. In recursive form the n-th
    update moves the average towards w_n by 1 - beta_n, beta_n = d (1 - d^(n-1)) / (1 - d^n).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1), not {decay}")

    @torch.no_grad()
    def update(ema_params, params, n_averaged) -> None:
        n = int(n_averaged) + 1  # this is the n-th update (the first one copies w_1)
        beta = decay * (1.0 - decay ** (n - 1)) / (1.0 - decay ** n)
        floating = [(e, p) for e, p in zip(ema_params, params) if torch.is_floating_point(e)]
        if floating:
            torch._foreach_lerp_([e for e, _ in floating], [p for _, p in floating], 1.0 - beta)
        for e, p in zip(ema_params, params):
            if not torch.is_floating_point(e):
                e.copy_(p)

    return update


def ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """Bias-corrected exponential moving average of ``model``'s weights (torch's AveragedModel
    with ``bias_corrected_ema_fn``); ``.module`` is the averaged copy."""
    return AveragedModel(model, multi_avg_fn=bias_corrected_ema_fn(decay), use_buffers=True)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU. On a GPU that supports them, TF32
    matmuls and convolutions are switched on (``precision``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for but CUDA is not available here; use device='auto' or 'cpu'")
    device = torch.device(name)
    if precision(device).tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def device_of(model, fallback: torch.device) -> torch.device:
    """The device of ``model``'s parameters; ``fallback`` for a plain callable (an analytic score)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return fallback


@dataclass(frozen=True)
class Precision:
    """How a device computes: the autocast dtype (None: float32 throughout), whether training
    needs a gradient scaler (float16's range is too narrow for small gradients) and whether
    TF32 matmuls are on. Recorded in every run's history."""

    name: str
    dtype: torch.dtype | None
    scaler: bool
    tf32: bool


FLOAT32 = Precision("float32", None, False, False)
BF16 = Precision("bf16 autocast, TF32 matmuls", torch.bfloat16, False, True)
FP16 = Precision("fp16 autocast, gradient scaler", torch.float16, True, False)


def precision(device: torch.device, capability: tuple[int, int] | None = None, bf16: bool | None = None) -> Precision:
    """The precision chosen by the hardware: float32 on the CPU; bf16 autocast with TF32 on
    CUDA GPUs from Ampere on (compute capability 8); fp16 autocast with a gradient scaler on
    older ones (a T4, Colab's common GPU, has no native bf16). ``capability`` and ``bf16``
    stand in for the device's own answers (tests)."""
    if device.type != "cuda":
        return FLOAT32
    major = (capability or torch.cuda.get_device_capability(device))[0]
    native_bf16 = torch.cuda.is_bf16_supported() if bf16 is None else bf16
    return BF16 if major >= 8 and native_bf16 else FP16


def autocast(device: torch.device, chosen: Precision | None = None):
    """Autocast at ``chosen`` precision, by default the device's (``precision``; safe for the
    UNet: losses are computed in float32); off on the CPU."""
    p = chosen or precision(device)
    return torch.autocast(device_type=device.type, dtype=p.dtype or torch.float32, enabled=p.dtype is not None)
