"""Threads on a busy machine (issue 12, part 9): the cpu profile's training throughput with two
intra-op threads in one process (the default until now), the same with OpenMP's passive wait
policy, and two single-threaded processes training independent targets side by side (what
``train.ensure_many`` with a process pool does), each alone and beside a competing process that
keeps one core busy. Throughput = training steps per second, summed over the processes, each
process stepping for the same wall time; printed side by side as ratios to the default alone.

    PYTHONPATH=. .venv/bin/python benchmarks/threads.py [--seconds 20]
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
from miakit import config, train
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


def measure(processes: int, threads: int, seconds: float, passive: bool, competitor: bool) -> float:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
    try:
        time.sleep(0.5 if competitor else 0)
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(threads), str(seconds)], env=env,
                                    stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        steps = sum(int(w.communicate()[0].split()[-1]) for w in workers)
    finally:
        if busy:
            busy.kill()
    return steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    cases = [("1 process x 2 threads (default)", 1, 2, False), ("1 process x 2 threads, passive wait", 1, 2, True),
             ("2 processes x 1 thread", 2, 1, False), ("1 process x 1 thread", 1, 1, False)]
    rows = []
    for competitor in (False, True):
        for label, procs, threads, passive in cases:
            rate = measure(procs, threads, args.seconds, passive, competitor)
            rows.append((label, "beside a busy core" if competitor else "alone", rate))
            print(f"{label:40s} {rows[-1][1]:20s} {rate:7.2f} steps/s", flush=True)
    base = rows[0][2]
    print(f"\nsteps/s relative to the default alone ({base:.2f} steps/s):")
    for label, where, rate in rows:
        print(f"  {label:40s} {where:20s} {rate / base:6.2f}")


if __name__ == "__main__":
    main()
