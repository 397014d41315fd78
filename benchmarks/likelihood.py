"""Benchmark P2: how fast and how accurate is miakit's batched likelihood, against the paper's loop?

Everything runs side by side in ONE process, on the SAME trained ``cpu``-profile DDPM target
(loaded from ``runs/`` via ``miakit.training.train.ensure``; 16x16 digits) and the SAME images (the first
``--images``/2 test members and the first test nonmembers), with the SAME Hutchinson probe per
image (``miakit.diffusion.likelihood._probes(seed, i, ...)``, i = the image's position in the tensor).

(1) ours: ``miakit.diffusion.likelihood.likelihood`` (torchdiffeq, whole batch in one ODE, drift and
    divergence from one forward + one backward pass) at dopri5 rtol=atol=1e-5 (the paper's
    tolerance), 1e-4, 1e-3, and fixed-step RK4 through torchdiffeq, once on a grid UNIFORM in t
    (``options={"step_size": ...}``) and once on a grid quadratic in t (fine near t = eps, via
    ``options={"grid_constructor": ...}``). Fixed steps are not error-controlled: their |dbpd|
    column is the honest measure of what they cost in accuracy.
(2) the paper loop: ``miakit.evidence.speed.paper_likelihood``, a faithful re-implementation of
    score_sde's ``likelihood.py`` as used by Hu & Pang (scipy RK45 at rtol = atol = 1e-5, one
    image at a time, numpy<->torch at every evaluation, the drift evaluated twice per step);
    see that module's docstring. The timing itself is ``miakit.evidence.speed.likelihood_speed``, the
    same function the book's chapter 03 runs.

Reported per setting: images/s, the speed ratio to the paper loop (>1 = ours faster), mean and
max |delta bits/dim| against the paper loop (same images, same probes), NFE per image, and the
cost of one drift+divergence evaluation per image (seconds per image-evaluation). With
``--batch`` > 0 ours is also timed on a batch of that many images (throughput only: the paper
loop is not run on them; skipped for dopri5 1e-5 and uniform rk4 to keep the run short). The P2 target is >= 20x the paper loop at
mean |dbpd| <= 0.01; the last column says whether each setting meets it.

Drift: miakit's ``DDPM.ode_drift`` follows score_sde's likelihood (``continuous=True``): labels
t * 999 and the continuous VP std, so the paper loop and ours integrate the same ODE.

Threads default to 1: on this shared 2-core VM torch's 2-thread kernels became ~100x slower
while another CPU job ran. All cases use the same thread count.

    PYTHONPATH=. .venv/bin/python benchmarks/likelihood.py            # ~4-6 min on 1 free core
    PYTHONPATH=. .venv/bin/python benchmarks/likelihood.py --quick    # ~1.5 min
    ... --out PATH   # all numbers as JSON (default benchmarks/results/likelihood.json)
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miakit.core import config  # noqa: E402
from miakit.training import train
from miakit.evidence.speed import P2_MEAN_DBPD, P2_RATIO, likelihood_speed_of_run  # noqa: E402

NO_BATCH = ("dopri5 1e-5", "rk4 uniform 50")  # too slow for the default run's time budget


# ------------------------------------------------------------------------------------ helpers

def quadratic_grid(n):
    def construct(func, y0, t):
        s = torch.linspace(0, 1, n + 1, dtype=t.dtype, device=t.device)
        return t[0] + (t[-1] - t[0]) * s ** 2
    return construct


def settings(quick):
    rows = {"dopri5 1e-5": dict(method="dopri5", rtol=1e-5, atol=1e-5),
            "dopri5 1e-4": dict(method="dopri5", rtol=1e-4, atol=1e-4),
            "dopri5 1e-3": dict(method="dopri5", rtol=1e-3, atol=1e-3)}
    for n in ([] if quick else [50]):
        rows[f"rk4 uniform {n}"] = dict(method="rk4", options={"step_size": (1 - 1e-5) / n})
    for n in [12, 25]:
        rows[f"rk4 quad-grid {n}"] = dict(method="rk4", options={"grid_constructor": quadratic_grid(n)})
    return rows


# --------------------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=None, help="images in the side-by-side (default 4, --quick 2)")
    p.add_argument("--batch", type=int, default=None, help="throughput batch for ours (default 32, --quick 0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "likelihood.json"))
    args = p.parse_args(argv)
    n_img = args.images or (2 if args.quick else 4)
    n_batch = args.batch if args.batch is not None else (0 if args.quick else 32)
    torch.set_num_threads(args.threads)

    run = train.ensure(config.resolve("cpu"), progress_bar=False)
    n_mem = (n_img + 1) // 2
    print(f"target {run.dir.name} ({run.family.name}, {run.settings.target.model}), {n_img} images "
          f"({n_mem} members, {n_img - n_mem} nonmembers) {tuple(run.dataset.images.shape[1:])}, "
          f"threads {torch.get_num_threads()}", flush=True)
    result = likelihood_speed_of_run(run, n_img, n_batch, settings(args.quick), NO_BATCH, args.seed)
    table = result.table()
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print()
        print(table)
    print()
    print(f"paper loop bpd per image: {np.round(result.paper.bpd, 4).tolist()}")
    print("paper loop evaluation = 2 UNet forwards + 1 backward on 1 image, plus numpy<->torch copies; "
          "ours = 1 forward + 1 backward on the whole batch")
    print(f"P2 target: >= {P2_RATIO:.0f}x the paper loop (at {n_img} images, or on a batch of {n_batch}) "
          f"with mean |dbpd| <= {P2_MEAN_DBPD} against it")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(n_images=n_img, n_members=n_mem, threads=result.threads,
                                   seed=args.seed, torch=torch.__version__, python=platform.python_version(),
                                   paper=asdict(result.paper), ours=[asdict(r) for r in result.ours],
                                   p2={name: result.meets_p2(name) for name in settings(args.quick)},
                                   target=dict(ratio=P2_RATIO, mean_dbpd=P2_MEAN_DBPD)), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
