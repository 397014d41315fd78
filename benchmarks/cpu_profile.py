"""What buys training seeds on a 2-core CPU? Membership signal per CPU-second of candidate targets.

The ``cpu`` profile must train several targets per arm (training-seed variation) within the
book's hour, so each candidate below is trained side by side in ONE run on this machine (same
split seed, same attack) and reported as training steps per second, training seconds, and the
loss attack's test AUC and TPR at 1% FPR at the step chosen on validation data:

- ``16x16 small``: digits upsampled to 16x16, the 1.1M-parameter UNet (the old cpu profile);
- ``8x8 small``: digits at their native 8x8 (no upsampling: a quarter of the pixels, no loss
  of information), same UNet;
- ``8x8 tiny``: native 8x8, the 0.16M-parameter UNet;
- ``8x8 small, half the steps at 2x lr``: fewer iterations at a higher learning rate;
- ``fashion-mnist 16x16 small``: Fashion-MNIST at 16x16, for realism (needs Debian's
  ``dataset-fashion-mnist``; skipped with a note when missing).

    PYTHONPATH=. .venv/bin/python benchmarks/cpu_profile.py              # ~15 min on 2 cores
    PYTHONPATH=. .venv/bin/python benchmarks/cpu_profile.py --only "8x8 small" --members 200

Results go to ``benchmarks/results/cpu_profile.json``. Absolute seconds vary with the machine's
load; compare rows of the same run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miakit.core import config, data  # noqa: E402
from miakit.chapters import loss_and_likelihood
from miakit.training import train

CANDIDATES = {
    "16x16 small": dict(dataset="digits", resolution=16, model="small", iterations=1200, lr=1e-3),
    "8x8 small": dict(dataset="digits", resolution=8, model="small", iterations=1200, lr=1e-3),
    "8x8 tiny": dict(dataset="digits", resolution=8, model="tiny", iterations=1200, lr=1e-3),
    "8x8 small, half the steps at 2x lr": dict(dataset="digits", resolution=8, model="small", iterations=600, lr=2e-3),
    "fashion-mnist 16x16 small": dict(dataset="fashion-mnist", resolution=16, model="small", iterations=1200,
                                      lr=1e-3),
}


def measure(name: str, overrides: dict, members: int, runs_dir: str) -> dict:
    s = config.resolve("cpu", runs_dir=runs_dir, n_members=members, n_nonmembers=1000, snapshot_every=0,
                       **overrides)
    began = time.perf_counter()
    run = train.ensure(s, progress_bar=False)
    trained = time.perf_counter() - began
    began = time.perf_counter()
    study = loss_and_likelihood.loss_attack_study(run, progress_bar=False, n_steps=21, n_noise=4)
    attacked = time.perf_counter() - began
    j = study.best_index_val
    result = study.test[j]
    seconds = run.history["train_seconds_this_session"]
    return {"candidate": name, **overrides, "members": members, "train seconds": round(seconds, 1),
            "steps per second": round(s.target.iterations / seconds, 2),
            "wall seconds (train or load)": round(trained, 1), "attack seconds": round(attacked, 1),
            "chosen step": int(study.steps[j]), "test AUC": round(result.auc, 4),
            "TPR@1%FPR": round(result.tpr_at_fpr[0.01], 3),
            "AUC interval": [round(study.chosen().low, 4), round(study.chosen().high, 4)]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--only", action="append", help="candidate name (any number of times)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench-cpu-profile"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu_profile.json"))
    args = p.parse_args(argv)
    rows = []
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        try:
            rows.append(measure(name, overrides, args.members, args.runs_dir))
        except data.DatasetError as err:
            rows.append({"candidate": name, "skipped": str(err)})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
