"""How the cpu profile's benchmark recipe was chosen (chapter 06's benchmark regime), on
validation data only: train one family's benchmark target with a candidate member count,
length and learning rate, and print the probe attack's best validation AUC (``benchmark.PROBE``,
SimA over its grid) at every EMA snapshot, beside the band the regime aims for.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_recipe.py --family ddpm --members 1000 \\
        --iterations 8000 --lr 2e-3 [--runs-dir /tmp/recipe]

Measured on this 2-core machine (one thread per training, Fashion-MNIST at 8x8, the cpu profile's
tiny UNet, batch 64, EMA 0.995, warm-up 100; 2000 nonmembers, validation fraction 0.4; SimA's,
PIA's and the loss attack's best validation AUC per snapshot, from an earlier form of this
script that scored all three):

- 1000 members (the paper's count), lr 2e-3, EMA 0.999: the strongest of the three read 0.558,
  0.609, 0.664, 0.721 after 2k, 4k, 6k, 8k iterations (SimA), 1823 s for the 8k. The band
  (0.75-0.95) would take 10k+ iterations, about 40 minutes per family and 2.7 hours for the four:
  it does not fit the cpu build's hour. The gpu and paper profiles keep 1000 members.
- 250 members, lr 2e-3, EMA 0.995, 3000 iterations (about 200-300 s per family):
  DDPM 0.643, 0.696, 0.752, 0.816 after 750, 1500, 2250, 3000 (SimA; PIA 0.606 -> 0.810, loss
  0.617 -> 0.756); SMLD 0.780, 0.956, 0.998, 1.000 and VE-SDE 0.789, 0.941, 0.990, 1.000 (SimA).
  The families memorise at different speeds, so the cpu profile trains all four for 3000
  iterations and ``benchmark.choose_length`` picks each family's snapshot nearest the band's
  centre on validation (``bench_n_members=250, bench_iterations=3000, bench_lr=2e-3``).

The book's cpu build reports the same curve for its own targets (chapter 06, "How the regime's
length was chosen"). Nothing here reads the test part.
"""
from __future__ import annotations

import argparse
import time

from miakit.chapters import benchmark
from miakit.core import config
from miakit.training import train


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="ddpm")
    parser.add_argument("--members", type=int, default=250)
    parser.add_argument("--nonmembers", type=int, default=2000)
    parser.add_argument("--val-fraction", type=float, default=0.4)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--runs-dir", default="/tmp/miakit-recipe")
    args = parser.parse_args(argv)
    settings = config.resolve("cpu", runs_dir=args.runs_dir, bench_n_members=args.members,
                              bench_n_nonmembers=args.nonmembers, bench_val_fraction=args.val_fraction,
                              bench_iterations=args.iterations, bench_lr=args.lr)
    bench = benchmark.bench_settings(settings).for_family(args.family)
    began = time.perf_counter()
    run = train.ensure(bench)
    seconds = time.perf_counter() - began
    curve = benchmark.probe_curve(run)
    lo, hi = benchmark.BAND
    print(f"{args.family}: {args.members} members, lr {args.lr:g}, {args.iterations} iterations "
          f"({seconds:.0f} s to train or load); band [{lo:g}, {hi:g}]")
    for iteration, auc in curve:
        mark = "in band" if lo <= auc <= hi else ("saturated" if auc > hi else "weak")
        print(f"  {iteration:>6}  {benchmark.attacks.get(benchmark.PROBE).label} best validation AUC {auc:.3f}  {mark}")
    print(f"chosen length (nearest the band's centre): {benchmark.choose_length(curve)}")


if __name__ == "__main__":
    main()
