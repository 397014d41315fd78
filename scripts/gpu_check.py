"""The GPU check (``make gpu-check``): one prepared script to run when a GPU is at hand.

1. The smoke profile end to end on the GPU: every notebook executed and the book built
   (``python -m miakit.book --profile smoke -p device=cuda``) into a temporary folder.
2. For the ``gpu`` and ``paper`` profiles: the median seconds of one training step and of one
   loss-attack batch of the profile's UNet at its batch sizes and the device's precision
   (``miakit.speed.step_timing``, on random images: no dataset is needed), and the training hours
   per chapter that this step time gives (``miakit.budget``, DP-SGD steps at twice an ordinary one).

Everything measured is printed and written as JSON (``--out``), for book/reproduce.md. Without
CUDA it stops with a message, unless ``--device cpu`` asks for a dry run (used by the tests, with
``--profiles smoke --skip-book``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profiles", default="gpu,paper")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-book", action="store_true", help="skip the smoke book (part 1)")
    parser.add_argument("--out", default="gpu-check.json")
    args = parser.parse_args(argv)

    import torch

    from miakit import budget, config, speed

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: the GPU check needs one (or --device cpu for a dry run)")
        return 2
    report = {"device": args.device, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none"}
    if not args.skip_book:
        with tempfile.TemporaryDirectory(prefix="miakit-gpu-check-") as tmp:
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "miakit.book", "--profile", "smoke", "-p",
                                   f"device={args.device}", "-p", f"runs_dir={tmp}/runs", "--stage", f"{tmp}/stage"],
                                  cwd=ROOT)
            report["smoke book"] = {"returncode": done.returncode, "seconds": round(time.perf_counter() - began, 1)}
    for profile in args.profiles.split(","):
        settings = config.resolve(profile, device=args.device)
        timing = speed.step_timing(settings, budget.image_channels(settings), args.repeats)
        frame = budget.table(settings, seconds_per_image_step=timing.seconds_per_image_step)
        report[profile] = {**asdict(timing), "seconds_per_image_step": timing.seconds_per_image_step,
                           "seconds_per_evaluation": timing.seconds_per_evaluation,
                           "hours per chapter": frame["hours"].to_dict()}
        print(f"\nprofile {profile}: {timing.step_seconds * 1e3:.1f} ms per training step of {timing.batch_size} "
              f"({timing.precision}), {timing.attack_seconds * 1e3:.1f} ms per attack batch of {timing.attack_batch}")
        print(frame.to_string())
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {args.out}")
    book = report.get("smoke book", {}).get("returncode", 0)
    return 1 if book else 0


if __name__ == "__main__":
    sys.exit(main())
