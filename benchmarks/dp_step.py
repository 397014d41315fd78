"""Benchmark P3: what does a DP-SGD step cost against an ordinary step at the same batch?

Side by side in ONE process, on the cpu profile's UNet ("small", 1.1M parameters, 16x16, DDPM
loss, batch 64, K = 1 unless ``--k``): each case gets a fresh copy of the same model and the
same data, and the cases are timed in interleaved rounds (round r times one step of every
case), so machine noise hits all of them alike; medians are reported.

Cases:
- ``non-private``: forward, backward, ``clip_grad_norm_``, Adam (what ``miakit.train`` does);
- ``opacus hooks + contiguous fix`` (what ``miakit.privacy`` trains with);
- ``opacus functorch``;
- ``opacus hooks, no fix`` (for reference only: its per-sample gradients are WRONG for the
  convs after attention, so it is not a candidate).
Each DP case is a full DP-SGD step (per-sample gradients, clipping, noise, Adam) through
``PrivacyEngine.make_private`` with a fixed noise multiplier and a fixed batch (no Poisson
sampling, so every step has the same size). Before timing, every DP case's per-sample gradients
are checked against a per-example loop (``miakit.privacy.per_sample_gradient_mismatches``) and
the result is printed: a speed ratio counts only for a verified case. P3's target: <= 2x the
non-private step with verified per-sample gradients. The measurement is
``miakit.speed.dp_step_speed``, which chapter 05 of the book also runs.

    PYTHONPATH=. .venv/bin/python benchmarks/dp_step.py            # ~30-60 s on 2 cores
    ... --rounds 20 --batch 64 --k 1 --out benchmarks/results/dp_step.json
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

from miakit import diffusion, speed  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, default=1, help="noise multiplicity (replicas per example)")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--preset", default="small")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dp_step.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    x0 = torch.rand(args.batch, 1, args.resolution, args.resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = speed.dp_step_speed(diffusion.family("ddpm"), args.preset, x0, args.k, args.rounds)
    print(result.table().to_string())
    print(f"\nbatch {args.batch}, K = {args.k}, {args.resolution}x{args.resolution}, preset {args.preset}, "
          f"threads {result.threads}, {args.rounds} interleaved rounds; P3 target <= {speed.P3_RATIO:g}x with "
          f"verified per-sample gradients: {'met' if result.meets_p3() else 'missed'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(vars(args), ms=result.ms, verified=result.verified, threads=result.threads,
                                   meets_p3=result.meets_p3(), torch=torch.__version__,
                                   python=platform.python_version()), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
