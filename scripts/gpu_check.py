"""The GPU check (``make gpu-check``): one prepared script to run when a GPU is at hand.

1. For the ``gpu`` and ``paper`` profiles, on random images of the profile's shape (no dataset
   is needed; speed does not depend on pixels):
   - the median seconds of one training step and of one loss-attack batch of the profile's UNet
     at its batch sizes and the device's precision (``miakit.evidence.speed.step_timing``), the sustained
     TFLOP/s this gives (``miakit.chapters.budget.flops_per_image_step``), and the training hours per
     chapter that the step time gives (``miakit.chapters.budget.table``);
   - on a GPU that chooses bf16, the same step at fp16 with a gradient scaler: the path a T4
     (Colab's common GPU) takes, run on CUDA here, with its losses checked finite.
2. The smoke profile end to end on the GPU: each notebook executed with papermill
   (``miakit.book.execute``, ``device=cuda``) into a temporary folder, one by one so that one
   failure does not hide the others, and the HTML built when jupyter-book is installed.
3. For the same profiles, P3 on the GPU: the private training step against an ordinary one
   (``miakit.evidence.speed.dp_step_speed``, each per-example gradient engine verified first) at the
   profile's chapter-05 target, and the hours per chapter again with this measured ratio in
   place of the assumed 2.

Everything measured is printed and written as JSON (``--out``) after each part, so a run stopped
by a time limit keeps what it measured. Without CUDA it stops with a message, unless
``--device cpu`` asks for a dry run (used by the tests, with ``--profiles smoke --skip-book``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timing_report(settings, timing, budget, private_factor: float = 2.0) -> dict:
    frame = budget.table(settings, seconds_per_image_step=timing.seconds_per_image_step, private_factor=private_factor)
    return {**asdict(timing), "seconds_per_image_step": timing.seconds_per_image_step,
            "seconds_per_evaluation": timing.seconds_per_evaluation,
            "sustained TFLOP/s": budget.flops_per_image_step(settings) / timing.seconds_per_image_step / 1e12,
            "hours per chapter": frame["hours"].to_dict()}


def _failure(err: BaseException) -> dict:
    print(traceback.format_exc(), flush=True)
    return {"error": f"{type(err).__name__}: {err}"[:2000]}


def step_times(args, report: dict, write) -> None:
    from miakit.chapters import budget
    from miakit.core import config
    from miakit.diffusion import unet
    from miakit.evidence import speed

    for profile in args.profiles.split(","):
        try:
            settings = config.resolve(profile, device=args.device)
            channels = budget.image_channels(settings)
            timing = speed.step_timing(settings, channels, args.repeats)
            entry = _timing_report(settings, timing, budget)
            print(f"\nprofile {profile}: {timing.step_seconds * 1e3:.1f} ms per training step of {timing.batch_size} "
                  f"({timing.precision}), {timing.attack_seconds * 1e3:.1f} ms per attack batch of "
                  f"{timing.attack_batch}, {entry['sustained TFLOP/s']:.1f} TFLOP/s sustained", flush=True)
            print(budget.table(settings, seconds_per_image_step=timing.seconds_per_image_step).to_string(), flush=True)
            device = unet.pick_device(settings.device)
            if unet.precision(device) != unet.FP16 and device.type == "cuda":
                fp16 = speed.step_timing(settings, channels, args.repeats, precision=unet.FP16)
                entry["fp16 with gradient scaler (a T4's path)"] = _timing_report(settings, fp16, budget)
                print(f"profile {profile} at fp16 with a gradient scaler: {fp16.step_seconds * 1e3:.1f} ms per step, "
                      f"losses finite: {fp16.losses_finite}", flush=True)
        except Exception as err:  # noqa: BLE001 - the check reports every part it could run
            entry = _failure(err)
        report[profile] = entry
        write()


def smoke_book(args, report: dict, write) -> None:
    from miakit.book import build

    entry = report["smoke book"] = {"notebooks": {}}
    with tempfile.TemporaryDirectory(prefix="miakit-gpu-check-") as tmp:
        stage, parameters = Path(tmp) / "stage", {"device": args.device, "runs_dir": f"{tmp}/runs"}
        build.stage_sources(ROOT, stage)
        for nb in build.notebooks(ROOT):
            began = time.perf_counter()
            try:
                build.execute(ROOT, stage, "smoke", parameters, only=[nb.stem])
                status = "ok"
            except Exception as err:  # noqa: BLE001
                status = _failure(err)["error"]
            entry["notebooks"][nb.stem] = {"status": status, "seconds": round(time.perf_counter() - began, 1)}
            write()
        if (Path(sys.executable).parent / "jupyter-book").exists():  # what build.build_html runs
            try:
                build.build_html(stage)
                entry["html"] = "built"
            except BaseException as err:  # noqa: BLE001 - build_html raises SystemExit
                entry["html"] = _failure(err)["error"]
        else:
            entry["html"] = "not built: jupyter-book is not installed here"
    entry["returncode"] = int(any(v["status"] != "ok" for v in entry["notebooks"].values())
                              or entry["html"] not in ("built", "not built: jupyter-book is not installed here"))
    write()


def dp_steps(args, report: dict, write) -> None:
    import torch

    from miakit.chapters import budget, loss_and_likelihood, differential_privacy
    from miakit.core import config
    from miakit.evidence import speed

    for profile in args.profiles.split(","):
        try:
            settings = config.resolve(profile, device=args.device)
            lead = loss_and_likelihood.lead_family(dict.fromkeys(settings.family_names()))
            arm = differential_privacy.arm_specs(settings)[-1]  # the most private arm: clipping and noise
            target = differential_privacy.target_settings(settings, lead, arm, settings.target.train_seed)
            members = torch.rand(settings.privacy_study.dp_n_members, budget.image_channels(settings),
                                 settings.data.resolution, settings.data.resolution,
                                 generator=torch.Generator().manual_seed(0)) * 2 - 1
            dp = speed.dp_step_speed(target, members, rounds=args.dp_rounds)
            print(f"\nprofile {profile}, P3 on {args.device}:\n{dp.table().to_string()}", flush=True)
            timing = report.get(profile, {})
            entry = {"arm": arm.label, "ms": dp.ms, "verified": dp.verified,
                     "ratio": dp.ratio(speed.TRAINED), "meets P3": dp.meets_p3(), "batch": dp.batch, "k": dp.k}
            if "seconds_per_image_step" in timing:
                frame = budget.table(settings, seconds_per_image_step=timing["seconds_per_image_step"],
                                     private_factor=dp.ratio(speed.TRAINED))
                entry["hours per chapter at this ratio"] = frame["hours"].to_dict()
        except Exception as err:  # noqa: BLE001
            entry = _failure(err)
        report.setdefault("P3", {})[profile] = entry
        write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profiles", default="gpu,paper")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dp-rounds", type=int, default=5, help="interleaved rounds of the P3 timing")
    parser.add_argument("--skip-book", action="store_true", help="skip the smoke notebooks (part 2)")
    parser.add_argument("--skip-dp", action="store_true", help="skip the private step's timing (part 3)")
    parser.add_argument("--out", default="gpu-check.json")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: the GPU check needs one (or --device cpu for a dry run)")
        return 2
    from miakit.diffusion import unet

    cuda = args.device.startswith("cuda")
    report = {"device": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
              "gpu name": torch.cuda.get_device_name(0) if cuda else "none",
              "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
              "precision": unet.precision(torch.device(args.device)).name}
    out = Path(args.out)

    def write() -> None:
        out.write_text(json.dumps(report, indent=2, default=str))

    write()
    step_times(args, report, write)
    if not args.skip_book:
        smoke_book(args, report, write)
    if not args.skip_dp:
        dp_steps(args, report, write)
    print(f"\nwritten to {out}")
    failed = [p for p in args.profiles.split(",") if "error" in report[p]]
    failed += [f"P3 {p}" for p, v in report.get("P3", {}).items() if "error" in v]
    if report.get("smoke book", {}).get("returncode"):
        failed.append("smoke book")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
