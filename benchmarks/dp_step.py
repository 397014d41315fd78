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
non-private step with verified per-sample gradients.

    PYTHONPATH=. .venv/bin/python benchmarks/dp_step.py            # ~2-3 min on 2 cores
    ... --rounds 20 --batch 64 --k 1 --out benchmarks/results/dp_step.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miakit import diffusion, models, privacy  # noqa: E402

TARGET_RATIO = 2.0


def fresh_unet(resolution):
    torch.manual_seed(0)
    return models.build_unet("small", "ddpm", resolution, 1).train()


def non_private_case(fam, x0, k, resolution):
    model = fresh_unet(resolution)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def step():
        loss = privacy.replica_loss(fam, model, x0, k, gen).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return step


def private_case(fam, x0, k, resolution, mode, fix):
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    model = fresh_unet(resolution)
    if fix:
        privacy.contiguous_conv_inputs(model)
    loader = DataLoader(TensorDataset(x0), batch_size=x0.shape[0])
    dp_model, optimizer, _ = PrivacyEngine(accountant="prv").make_private(
        module=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-4), data_loader=loader,
        noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode)
    gen = torch.Generator().manual_seed(0)

    def step():
        loss = privacy.replica_loss(fam, dp_model, x0, k, gen).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        privacy.merge_replicas(dp_model, k)
        optimizer.step()
    return step


def verify(fam, mode, fix, resolution, k):
    """Per-sample gradient check of a case on 3 images (hooks modes; functorch via opacus' own
    GradSampleModule in functorch mode is checked the same way)."""
    x = torch.rand(3, 1, resolution, resolution, generator=torch.Generator().manual_seed(5)) * 2 - 1
    return privacy.per_sample_gradient_mismatches(fresh_unet(resolution), fam, x, k, contiguous=fix,
                                                  force_functorch=(mode == "functorch"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, default=1, help="noise multiplicity (replicas per example)")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dp_step.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    fam = diffusion.family("ddpm")
    x0 = torch.rand(args.batch, 1, args.resolution, args.resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1

    specs = {"non-private": None, "opacus hooks + contiguous fix": ("hooks", True),
             "opacus functorch": ("functorch", False), "opacus hooks, no fix": ("hooks", False)}
    verified = {}
    for name, spec in specs.items():
        if spec is None:
            continue
        wrong = verify(fam, *spec, args.resolution, args.k)
        verified[name] = not wrong
        print(f"{name}: per-sample gradients {'verified for every parameter' if not wrong else f'WRONG for {len(wrong)} parameters, e.g. {wrong[:3]}'}", flush=True)

    steps = {name: (non_private_case(fam, x0, args.k, args.resolution) if spec is None
                    else private_case(fam, x0, args.k, args.resolution, *spec)) for name, spec in specs.items()}
    for step in steps.values():  # warm-up
        step()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - began)
    base = float(np.median(times["non-private"]))
    rows = []
    print()
    print(f"{'case':<34}{'ms/step':>10}{'x non-private':>15}{'verified':>10}{'P3':>6}")
    for name, values in times.items():
        median = float(np.median(values))
        ok = verified.get(name)
        meets = None if ok is None else bool(ok and median / base <= TARGET_RATIO)
        rows.append(dict(case=name, ms_per_step=1e3 * median, ratio=median / base, verified=ok, meets_p3=meets))
        print(f"{name:<34}{1e3 * median:>10.1f}{median / base:>15.2f}{'-' if ok is None else ('yes' if ok else 'NO'):>10}"
              f"{'' if meets is None else ('yes' if meets else 'no'):>6}")
    print(f"\nbatch {args.batch}, K = {args.k}, {args.resolution}x{args.resolution}, threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved rounds; P3 target <= {TARGET_RATIO:g}x with verified per-sample gradients")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(batch=args.batch, k=args.k, resolution=args.resolution, rounds=args.rounds,
                                   threads=torch.get_num_threads(), torch=torch.__version__,
                                   python=platform.python_version(), rows=rows, target_ratio=TARGET_RATIO), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
