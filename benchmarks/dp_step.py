"""Benchmark P3: what does a DP-SGD step cost against an ordinary step?

Side by side in ONE process: the training loop's own steps, each on a fresh copy of the same
UNet (default the "small" preset, 1.1M parameters, 16x16, DDPM loss, expected batch 64, K = 1),
the same members and a generator with the same seed, timed in interleaved rounds (round r
times one step of every case) so machine noise hits all of them alike; medians are reported.

Cases:
- ``ordinary step``: ``miakit.training.train.StandardStep`` (batch, forward, backward,
  ``clip_grad_norm_``, Adam);
- ``DP-SGD, book-keeping (miakit)``: ``miakit.training.dp_sgd.DPSGDStep`` as training runs it (Poisson
  batch, per-example clipping by book-keeping in ``miakit.training.clipping``, opacus' noise, Adam,
  the accountant's step);
- ``DP-SGD, opacus per-sample gradients``: the same step with opacus' ``GradSampleModule``
  and ``DPOptimizer`` (how miakit trained before), for comparison.
Before timing, each engine's per-example gradients and norms are checked against a per-example
loop (``miakit.training.dp_sgd.per_sample_gradient_mismatches``): a ratio counts only for a verified
case. P3's target: the book-keeping step <= 1.5x the ordinary step. The measurement is
``miakit.evidence.speed.dp_step_speed``, which chapter 05 of the book also runs on its own target.

    PYTHONPATH=. .venv/bin/python benchmarks/dp_step.py            # ~1 min on 2 cores
    ... --rounds 20 --batch 64 --k 1 --preset small --resolution 16 --out benchmarks/results/dp_step.json
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
from miakit.evidence import speed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, default=1, help="noise multiplicity (replicas per example)")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--preset", default="small")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--members", type=int, default=640, help="members the Poisson batches are drawn from")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dp_step.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    members = torch.rand(args.members, 1, args.resolution, args.resolution,
                         generator=torch.Generator().manual_seed(1)) * 2 - 1
    settings = config.resolve("cpu", device="cpu", resolution=args.resolution, model=args.preset, trainer="dp-sgd",
                              dp_epsilon=1.0, batch_size=args.batch, dp_multiplicity=args.k,
                              dp_physical_batch=4 * args.batch, n_members=args.members, iterations=1000)
    result = speed.dp_step_speed(settings, members, args.rounds, progress_bar=True)
    print(result.table().to_string())
    print(f"\nexpected batch {args.batch}, K = {args.k}, {args.resolution}x{args.resolution}, preset {args.preset}, "
          f"threads {result.threads}, {args.rounds} interleaved rounds; P3 target <= {speed.P3_RATIO:g}x with "
          f"verified per-example gradients: {'met' if result.meets_p3() else 'missed'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(vars(args), ms=result.ms, verified=result.verified, threads=result.threads,
                                   meets_p3=result.meets_p3(), torch=torch.__version__,
                                   python=platform.python_version()), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
