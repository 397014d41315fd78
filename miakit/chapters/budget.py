"""What a profile costs: every training the book runs, by chapter, from the same plans the
chapters train from.

Training dominates the book's cost on every profile (attacks are a few percent, except the
likelihood attack's adaptive solves on the cpu profile), so the budget counts trainings: for each
chapter, how many targets it trains that no earlier chapter trained, and how many image-steps
(iterations x batch) they take, ordinary and DP-SGD apart. With the seconds one image-step takes on
a machine (``make gpu-check`` measures them on a GPU; ``benchmarks`` on this CPU) it gives hours
per chapter.

The plans are the chapters' own: each chapter's ``trainings`` (its ``contract.Chapter``,
``miakit.chapters.book_chapters``): the targets of every family (chapter 01), one run per
member-set size and seed (chapter 04), every DP family, arm and seed (chapter 05), the reference
models and the benchmark targets (chapter 06).
"""
from __future__ import annotations

import argparse
import json

from miakit.chapters import feasibility
from miakit.chapters.contract import Training  # noqa: F401  (the budget's unit, re-exported)
from miakit.training import train
from miakit.core.config import Settings, resolve

PRIVATE_FACTOR = 2.0  # a DP-SGD image-step counted as this many ordinary ones unless measured


def trainings(settings: Settings) -> list[Training]:
    """Every training of the book under ``settings``, each counted once, in the chapter that
    first needs it (each chapter's own ``trainings``: ``miakit.chapters.book_chapters``)."""
    from miakit.chapters import book_chapters

    out, seen = [], set()
    for chapter in book_chapters():
        for tr in chapter.trainings(settings):
            key = (tr.settings.target_hash(), tr.reference)
            if key not in seen:
                seen.add(key)
                out.append(tr)
    return out


def process_pool(workers: int, threads: int = 1):
    """A pool of ``workers`` fresh processes (spawned, never forked from a process holding torch's
    threads) with ``threads`` intra-op threads each: on a CPU, independent targets train fastest
    as single-threaded processes side by side, alone and beside other work
    (benchmarks/threads.py)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads, initargs=(threads,))


def cost(tr: Training) -> float:
    """What ``tr`` costs, in ordinary image-steps of one pixel: its image-steps, a DP-SGD one
    counted ``PRIVATE_FACTOR`` times, times the pixels of an image (to order the trainings)."""
    return tr.image_steps * (PRIVATE_FACTOR if tr.private else 1) * tr.settings.data.resolution ** 2


def in_book_order(settings: Settings, chapters=None) -> list[Training]:
    """The trainings of ``chapters`` (default all), chapter by chapter in book order and the dearest
    first within a chapter: the order the book's build starts them in, so the first chapters' notebooks
    can start while the later chapters' targets train (``miakit.book.build``)."""
    todo = [tr for tr in trainings(settings) if chapters is None or tr.chapter in chapters]
    rank = {number: i for i, number in enumerate(dict.fromkeys(tr.chapter for tr in todo))}
    return sorted(todo, key=lambda tr: (rank[tr.chapter], -cost(tr)))


def pretrain(settings: Settings, executor=None, progress_bar: bool = True, chapters=None) -> list:
    """Train every target the book needs (of ``chapters``, default all) up front, in parallel on
    ``executor``'s workers when one is given (``train.ensure_many``); the chapters then load them.
    The chapters' images are checked against the dataset first (``miakit.chapters.feasibility``)."""
    feasibility.check(settings)
    todo = [tr for tr in trainings(settings) if chapters is None or tr.chapter in chapters]
    # the dearest first, so that no worker is left with a long training while the others idle
    todo.sort(key=lambda tr: -cost(tr))
    return train.ensure_many([(tr.settings, tr.reference) for tr in todo], progress_bar, executor)


def image_channels(settings: Settings) -> int:
    """The channels of the profile's images without loading them: 1 for the digits and
    Fashion-MNIST, else 3 (an image folder or hub dataset is taken as RGB; gray images change
    only the UNet's first and last layers)."""
    return 1 if settings.data.dataset.partition(":")[0] in ("digits", "fashion-mnist") else 3


def flops_per_image_step(settings: Settings) -> float:
    """Floating-point operations of one training image-step (forward and backward) of the
    profile's UNet at its resolution, counted by torch's ``FlopCounterMode`` on the CPU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from miakit.diffusion.unet import build_unet

    d = settings.data
    channels = image_channels(settings)
    net = build_unet(settings.target.model, settings.target.family, d.resolution, channels)
    x, t = torch.randn(2, channels, d.resolution, d.resolution), torch.tensor([10, 500])
    with FlopCounterMode(display=False) as counter:
        net(x, t).sample.square().mean().backward()
    return counter.get_total_flops() / 2


# sustained training throughput assumed for the estimates in book/reproduce.md (not measured:
# `make gpu-check` measures the real seconds per image-step): about a third of the dense fp16 /
# bf16 tensor-core peak, what convolutional UNets commonly sustain
ASSUMED_TFLOPS = {"T4 (fp16)": 20.0, "A100 (bf16)": 100.0}


def table(settings: Settings, seconds_per_image_step: float | None = None, private_factor: float = PRIVATE_FACTOR,
          tflops: dict[str, float] | None = None):
    """Per chapter: trainings, image-steps (ordinary and DP-SGD), and with
    ``seconds_per_image_step`` (an ordinary step's seconds per image on the machine) the training
    hours, a DP-SGD image-step counted as ``private_factor`` ordinary ones (chapter 05 measures the
    real ratio, P3). ``tflops`` (name -> sustained TFLOP/s) adds estimated hours per named GPU
    from the counted FLOPs of an image-step (``flops_per_image_step``)."""
    import pandas as pd

    rows = {}
    for tr in trainings(settings):
        row = rows.setdefault(tr.chapter, {"trainings": 0, "image-steps": 0, "DP-SGD image-steps": 0})
        row["trainings"] += 1
        row["DP-SGD image-steps" if tr.private else "image-steps"] += tr.image_steps
    frame = pd.DataFrame(rows).T.rename_axis("chapter")
    weighted = frame["image-steps"] + private_factor * frame["DP-SGD image-steps"]
    if seconds_per_image_step is not None:
        frame["hours"] = (weighted * seconds_per_image_step / 3600).round(1)
    if tflops:
        flops = flops_per_image_step(settings)
        for name, rate in tflops.items():
            frame[f"hours, {name}, estimated"] = (weighted * flops / (rate * 1e12) / 3600).round(1)
    return frame


ESTIMATED_PROFILES = ("gpu", "paper")  # the profiles whose hours book/reproduce.md estimates


def measured_label(check: dict) -> str:
    """The column name of the hours measured by a GPU check's report (``scripts/gpu_check.py``)."""
    name = check.get("gpu name", "GPU").split(" (")[0].removeprefix("NVIDIA ")
    return f"hours, {name} ({check.get('precision', '?').split(' ')[0]}), measured step"


def step_markdown(check: dict, profiles=ESTIMATED_PROFILES) -> str:
    """A GPU check's step times as book/reproduce.md shows them: per profile, the step at the
    device's precision, per image-step, the sustained TFLOP/s, and the fp16 path of a T4."""
    lines = ["| profile | step (batch, resolution) | ms per image-step | sustained TFLOP/s | "
             "the same step at fp16 with a gradient scaler (a T4's path) |", "| --- | --- | --- | --- | --- |"]
    for profile in profiles:
        row = check.get(profile, {})
        if "step_seconds" not in row:
            continue
        res = resolve(profile).data.resolution
        fp16 = row.get("fp16 with gradient scaler (a T4's path)")
        fp16_text = "-" if not fp16 else (f"{fp16['step_seconds'] * 1e3:.1f} ms, losses "
                                          f"{'finite' if fp16['losses_finite'] else 'NOT finite'}")
        lines.append(f"| `{profile}` | {row['step_seconds'] * 1e3:.1f} ms ({row['batch_size']} at {res}x{res}) | "
                     f"{row['seconds_per_image_step'] * 1e3:.2f} | {row['sustained TFLOP/s']:.1f} | {fp16_text} |")
    return "\n".join(lines) + "\n"


def markdown(profiles=ESTIMATED_PROFILES, check: dict | None = None) -> str:
    """The table of book/reproduce.md: per profile and chapter, the trainings, their image-steps
    and the training hours estimated at ``ASSUMED_TFLOPS``, and with ``check`` (a GPU check's
    JSON report) the hours at the seconds per image-step measured there (DP-SGD at
    ``private_factor`` 2 unless the check measured the ratio). ``test_docs`` keeps the page equal
    to it, with the recorded check of ``benchmarks/recorded``."""
    names = list(ASSUMED_TFLOPS)
    measured = [] if check is None else [measured_label(check)]
    lines = ["| profile | chapter | images it needs | trainings | image-steps (DP-SGD) | "
             + " | ".join([f"hours, {n}, estimated" for n in names] + measured) + " |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in names + measured) + " |"]
    for profile in profiles:
        settings = resolve(profile)
        frame, images = table(settings, tflops=ASSUMED_TFLOPS), feasibility.images_needed(settings)
        step = (check or {}).get(profile, {}).get("seconds_per_image_step")
        ratio = (check or {}).get("P3", {}).get(profile, {}).get("ratio", PRIVATE_FACTOR)
        real = None if step is None else table(settings, step, private_factor=ratio)["hours"]
        for chapter, row in frame.iterrows():
            hours = [f"{row[f'hours, {n}, estimated']:.1f}" for n in names]
            if measured:
                hours.append("-" if real is None else f"{real[chapter]:.1f}")
            lines.append(f"| `{profile}` | {chapter} | {images.get(chapter, 0):,} | {int(row['trainings'])} | "
                         f"{int(row['image-steps']):,} ({int(row['DP-SGD image-steps']):,}) | {' | '.join(hours)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Trainings and image-steps per chapter of a profile, and hours "
                                                 "given the seconds of one image-step")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seconds-per-image-step", type=float)
    parser.add_argument("--private-factor", type=float, default=PRIVATE_FACTOR)
    parser.add_argument("--estimate", action="store_true", help="add hours estimated from counted FLOPs at the "
                                                                 "assumed throughputs of ASSUMED_TFLOPS")
    parser.add_argument("--markdown", action="store_true", help="print book/reproduce.md's table of estimated hours")
    parser.add_argument("--check", type=argparse.FileType(), help="with --markdown: a GPU check's JSON report "
                                                                   "(make gpu-check), for a column of measured hours")
    parser.add_argument("--pretrain", type=int, metavar="WORKERS", default=0,
                        help="train every target of the profile now, in WORKERS single-threaded processes")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(check=json.load(args.check) if args.check else None), end="")
        return
    if args.pretrain:
        with process_pool(args.pretrain) as pool:
            runs = pretrain(resolve(args.profile), pool)
        print(f"profile {args.profile}: {len(runs)} targets trained or found")
        return
    frame = table(resolve(args.profile), args.seconds_per_image_step, args.private_factor,
                  ASSUMED_TFLOPS if args.estimate else None)
    print(f"profile {args.profile}")
    print(frame.to_string())


if __name__ == "__main__":
    main()
