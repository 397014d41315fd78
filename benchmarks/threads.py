"""Threads on a busy machine (issue 12, part 9): the cpu profile's training throughput with two
intra-op threads in one process (the default until now), the same with OpenMP's passive wait
policy, and two single-threaded processes training independent targets side by side (what
``train.ensure_many`` with a process pool does), each alone and beside a competing process that
keeps one core busy. Throughput = training steps per second, summed over the processes, each
process stepping for the same wall time; printed side by side as ratios to the default alone.
``--work score`` measures the same for the chapters' other work, scoring images with an attack
(the loss attack's forward passes at the cpu profile's batch): what ``miakit.book --workers``
relies on when it executes notebooks side by side, single-threaded.

    PYTHONPATH=. .venv/bin/python benchmarks/threads.py [--seconds 20] [--work train|score]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORKER = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from miakit.core import config
from miakit.training import train
from miakit.diffusion import family
s = config.resolve("cpu", device="cpu")
gen = torch.Generator().manual_seed(0)
members = torch.rand(s.data.n_members, 1, s.data.resolution, s.data.resolution, generator=gen) * 2 - 1
model = train._fresh_model(s, 1, torch.device("cpu")).train()
step = train.StandardStep(s, family("ddpm"), model, members, gen, torch.device("cpu"))
step.step()
deadline, n = time.perf_counter() + float(sys.argv[2]), 0
while time.perf_counter() < deadline:
    step.step(); n += 1
print(n)
"""

SCORER = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from miakit.core import config
from miakit.training import train
from miakit.attacks.loss import loss_scores
from miakit.diffusion import family
s = config.resolve("cpu", device="cpu")
fam = family("ddpm")
x = torch.rand(41, 1, s.data.resolution, s.data.resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
model = train._fresh_model(s, 1, torch.device("cpu")).eval()
steps = [fam.from_paper_step(t) for t in range(0, 1000, 100)]
loss_scores(model, fam, x, steps, 4, 0, s.attack.attack_batch, False)
deadline, n = time.perf_counter() + float(sys.argv[2]), 0
while time.perf_counter() < deadline:
    loss_scores(model, fam, x, steps, 4, 0, s.attack.attack_batch, False); n += 1
print(n)
"""


def measure(processes: int, threads: int, seconds: float, passive: bool, competitor: bool,
            work: str = WORKER) -> float:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
    try:
        time.sleep(0.5 if competitor else 0)
        workers = [subprocess.Popen([sys.executable, "-c", work, str(threads), str(seconds)], env=env,
                                    stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        steps = sum(int(w.communicate()[0].split()[-1]) for w in workers)
    finally:
        if busy:
            busy.kill()
    return steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--work", choices=("train", "score"), default="train",
                        help="train: training steps; score: loss-attack scoring of 41 images x 11 steps x 4 draws")
    args = parser.parse_args()
    work, unit = (WORKER, "steps/s") if args.work == "train" else (SCORER, "batches/s")
    cases = [("1 process x 2 threads (default)", 1, 2, False), ("1 process x 2 threads, passive wait", 1, 2, True),
             ("2 processes x 1 thread", 2, 1, False), ("1 process x 1 thread", 1, 1, False)]
    rows = []
    for competitor in (False, True):
        for label, procs, threads, passive in cases:
            rate = measure(procs, threads, args.seconds, passive, competitor, work)
            rows.append((label, "beside a busy core" if competitor else "alone", rate))
            print(f"{label:40s} {rows[-1][1]:20s} {rate:7.2f} {unit}", flush=True)
    base = rows[0][2]
    print(f"\n{unit} relative to the default alone ({base:.2f} {unit}):")
    for label, where, rate in rows:
        print(f"  {label:40s} {where:20s} {rate / base:6.2f}")


if __name__ == "__main__":
    main()
