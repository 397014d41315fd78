"""Benchmark (issue 11): every attack's model evaluations per second against the raw forward
throughput of the same UNet at its best batch size, side by side in one process.

The UNet is freshly initialised (weights do not change speed); the images are random. Each
attack runs over its profile grid (``--profile``), its evaluations counted by wrapping the model
(``miakit.evidence.speed.CountingModel``), at the raw limit's best batch size. Target: every attack at
>= 90% of the limit. The likelihood attack is left out (an adaptive ODE solve with a backward
pass per evaluation is not a forward-pass workload; P2 in ``benchmarks/likelihood.py`` covers it).

    PYTHONPATH=. .venv/bin/python benchmarks/attack_speed.py                 # ~1-2 min on 2 cores
    ... --preset small --resolution 16 --images 64 --family ddpm --out benchmarks/results/attack_speed.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miakit.core import config  # noqa: E402
from miakit import diffusion
from miakit.diffusion import unet
from miakit.evidence import speed

ATTACKS = ("loss", "secmi", "pia", "pian", "sima", "reference")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--resolution", type=int, default=8)
    p.add_argument("--family", default="ddpm")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attack_speed.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = unet.build_unet(args.preset, args.family, args.resolution, 1).eval()
    x = torch.rand(args.images, 1, args.resolution, args.resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = speed.attack_speed(model, diffusion.family(args.family), x, ATTACKS, config.resolve(args.profile))
    print(result.table().to_string())
    print(f"\nraw forward limit {result.limit:.0f} evaluations/s at batch {result.limit_batch}; preset {args.preset}, "
          f"{args.resolution}x{args.resolution}, {args.family}, {args.images} images, threads {result.threads}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(vars(args), limit=result.limit, limit_batch=result.limit_batch, rate=result.rate,
                                   evaluations_per_image=result.evaluations_per_image, threads=result.threads,
                                   torch=torch.__version__, python=platform.python_version()), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
