"""Benchmark P1: how fast is miakit's loss attack, compared with the paper's loop and the bare UNet?

Everything runs side by side in ONE process, on the SAME freshly initialised ``small`` UNet
(16x16, 1 channel, eval mode, ddpm family; untrained, since weights do not change speed) and the
SAME input images, so background load on the machine affects all cases alike. Timings are
interleaved round-robin over the repeats and the best (and median) of the repeats is reported.
The unit everywhere is **image*step evaluations per second** (one evaluation = one noisy copy of
one image at one step pushed through the UNet).

(a) ``miakit.attacks.loss_scores`` over all 1000 steps, ``n_noise=1``, default ``batch_size``.
(b) a faithful re-implementation of the paper code's loop (Hu & Pang 2023, built on score_sde):
    one image at a time; its 1000 noisy copies (one per step t = 0..999) built and pushed through
    the UNet in chunks of 200; per-sample losses moved to Python lists with ``.tolist()``;
    under ``torch.no_grad`` (no inference_mode).
(c) the raw forward throughput of the UNet alone, ``model(x, t)`` on pre-built inputs under
    ``torch.inference_mode``, at the best of a few batch sizes (64 ... 2048).
If (c)'s best batch size is not (a)'s default, (a) is also timed at that batch size ("a@best"),
which separates the attack's own overhead (noising, loss, bookkeeping) from the batch-size effect.
Each timed call of (a) and (b) scores ``--images`` images (default 1, i.e. 1000 evaluations) and
the calls are repeated over ``--repeats`` interleaved rounds (default 5), so the main comparison
covers 5000 evaluations per case; short interleaved calls keep the ratios honest when the load on
the machine changes during the run.

Then it tries what the ecosystem offers for (a) and (c): ``torch.set_num_threads`` (1 vs 2),
``channels_last`` memory format, ``torch.compile`` (in a subprocess with a hard time limit, so a
slow or failing compile on this CPU is reported rather than hanging the benchmark) and other
``batch_size`` values for (a). It also times the per-image noise generation of (a) on its own, and
the default ``cpu`` profile attack setting (41 steps x 4 noise draws = 164 evaluations per image).

On a machine shared with another CPU-heavy job, torch's multi-threaded (OpenMP) kernels become
erratic (the same call can run 10x slower from one repeat to the next); compare best with median
in the output, and consider ``--threads 1`` there.

    PYTHONPATH=. .venv/bin/python benchmarks/loss_attack.py            # ~2.5 minutes on 2 idle cores
    PYTHONPATH=. .venv/bin/python benchmarks/loss_attack.py --quick    # ~1 minute
    ... --out PATH   # all numbers as JSON (default benchmarks/results/loss_attack.json)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miakit import attacks  # noqa: E402
from miakit.core.config import PROFILES  # noqa: E402
from miakit.diffusion import family as get_family  # noqa: E402
from miakit.diffusion.unet import build_unet, n_parameters  # noqa: E402

RESOLUTION, CHANNELS, PRESET, FAMILY = 16, 1, "small", "ddpm"
PAPER_CHUNK = 200  # the paper code's chunk of noisy copies per forward pass
DEFAULT_BATCH = attacks.DEFAULT_BATCH["cpu"]  # what loss_scores uses on the CPU when not told


# --------------------------------------------------------------------------------------- setup

def make_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(PRESET, FAMILY, RESOLUTION, CHANNELS).eval()


def make_images(n: int, source: str, seed: int = 0) -> torch.Tensor:
    if source == "digits":
        from miakit.core.data import load
        images = load("digits", RESOLUTION)
        images = getattr(images, "images", images)
        return torch.as_tensor(images[:n], dtype=torch.float32).reshape(n, CHANNELS, RESOLUTION, RESOLUTION)
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, CHANNELS, RESOLUTION, RESOLUTION), generator=g) * 2 - 1


class ChannelsLast(torch.nn.Module):
    """Model wrapper feeding inputs in channels_last layout (weights converted once)."""

    def __init__(self, model):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x, t):
        return self.model(x.contiguous(memory_format=torch.channels_last), t)


class Threads:
    """Context manager: run with ``n`` intra-op threads, then restore."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


# ------------------------------------------------------------------------------------ the cases

def run_ours(model, fam, x, steps, n_noise=1, batch_size=DEFAULT_BATCH):
    """(a) the library's loss attack."""
    return attacks.loss_scores(model, fam, x, steps, n_noise=n_noise, seed=0,
                               batch_size=batch_size, progress_bar=False)


def run_paper(model, fam, x, n_steps=1000, chunk=PAPER_CHUNK):
    """(b) the paper code's loop, written out explicitly (score_sde DDPM loss at fixed steps)."""
    sqrt_abar = fam.alphas_cumprod.sqrt().float()           # score_sde keeps these as float32
    sqrt_1m_abar = (1 - fam.alphas_cumprod).sqrt().float()
    all_losses = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            image_losses = []
            for start in range(0, n_steps, chunk):
                labels = torch.arange(start, min(start + chunk, n_steps))
                batch = x[i:i + 1].repeat(labels.shape[0], 1, 1, 1)
                noise = torch.randn_like(batch)
                perturbed = sqrt_abar[labels, None, None, None] * batch + \
                    sqrt_1m_abar[labels, None, None, None] * noise
                out = model(perturbed, labels)
                out = out.sample if hasattr(out, "sample") else out
                losses = torch.square(out - noise).reshape(labels.shape[0], -1).mean(dim=-1)
                image_losses += losses.tolist()
            all_losses.append(image_losses)
    return all_losses


def forward_inputs(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, CHANNELS, RESOLUTION, RESOLUTION), generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x, t


def run_forward(model, x, t, calls: int):
    """(c) bare UNet forward passes on pre-built inputs."""
    with torch.inference_mode():
        for _ in range(calls):
            model(x, t)


def forward_case(model, batch: int, min_evals: int, memory_format=None):
    """A timed case for (c): enough calls at ``batch`` to cover at least ``min_evals``."""
    x, t = forward_inputs(batch)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    calls = max(1, -(-min_evals // batch))
    return (lambda: run_forward(model, x, t, calls)), calls * batch, (lambda: run_forward(model, x, t, 1))


# ----------------------------------------------------------------------------------- the timing

def race(cases: dict[str, tuple[Callable, int, Callable | None, int | None]], repeats: int,
         log: Callable[[str], None]) -> dict[str, dict]:
    """Time ``cases`` {name: (fn, evaluations, warmup_fn, threads)} round-robin ``repeats`` times.

    Each case is warmed up once first. Returns per case: evaluations, all times, best and median
    rate (evaluations per second).
    """
    for name, (fn, _, warm, threads) in cases.items():
        with Threads(threads):
            (warm or fn)()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, _, _, threads) in cases.items():
            with Threads(threads):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, (_, evals, _, threads) in cases.items():
        ts = times[name]
        out[name] = dict(evaluations=evals, threads=threads or torch.get_num_threads(), times_s=ts,
                         best_rate=evals / min(ts), median_rate=evals / statistics.median(ts))
        log(f"    {name:<40s} {out[name]['best_rate']:9.0f} eval/s best, "
            f"{out[name]['median_rate']:9.0f} median  ({evals} evals x {repeats})")
    return out


# ------------------------------------------------------------------------- torch.compile probe

def compile_probe(batch: int, n_images: int, repeats: int, threads: int) -> dict:
    """Run in a subprocess: eager vs compiled model for (c) at ``batch``, then for (a) on
    ``n_images``; progress goes to stderr as it happens, so a timeout still reports the first part."""
    torch.set_num_threads(threads)
    result: dict = {"torch": torch.__version__, "threads": threads}
    model = make_model()
    fam = get_family(FAMILY)
    x = make_images(n_images, "random")
    steps = fam.attack_steps(1000)
    def note(key, value):
        result[key] = value
        print("PROGRESS " + json.dumps({key: value}), file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    compiled = torch.compile(model)
    fwd_c, n_c, warm_c = forward_case(compiled, batch, batch)
    warm_c()
    note("compile_forward_s", time.perf_counter() - t0)
    fwd_e, n_e, warm_e = forward_case(model, batch, 1024)
    fwd_c, n_c, warm_c = forward_case(compiled, batch, 1024)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rates = race({f"(c) forward eager bs={batch}": (fwd_e, n_e, warm_e, None),
                  f"(c) forward compiled bs={batch}": (fwd_c, n_c, warm_c, None)}, repeats, log)
    note("forward_speedup", rates[f"(c) forward compiled bs={batch}"]["best_rate"] /
         rates[f"(c) forward eager bs={batch}"]["best_rate"])
    t0 = time.perf_counter()
    run_ours(compiled, fam, x[:1], steps)  # compiles the attack's batch shapes (512 and 488)
    note("compile_attack_s", time.perf_counter() - t0)
    rates.update(race({
        "(a) loss_scores eager": (lambda: run_ours(model, fam, x, steps), 1000 * n_images, None, None),
        "(a) loss_scores compiled": (lambda: run_ours(compiled, fam, x, steps), 1000 * n_images, None, None),
    }, repeats, log))
    result["rates"] = rates
    return result


def try_compile(batch: int, n_images: int, repeats: int, threads: int, timeout: float, log) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_compile-probe",
           json.dumps(dict(batch=batch, n_images=n_images, repeats=repeats, threads=threads))]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        done = {}
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        for line in stderr.splitlines():
            if line.startswith("PROGRESS "):
                done.update(json.loads(line[len("PROGRESS "):]))
        how_far = ", ".join(f"{k}={v:.2f}" for k, v in done.items()) or "first compile not finished"
        return dict(done, status="timeout", wall_s=time.perf_counter() - t0,
                    detail=f"compile + timing did not finish within {timeout:.0f} s ({how_far})")
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        return dict(status="failed", detail=" | ".join(tail), wall_s=wall)
    for line in proc.stderr.splitlines():
        if line.startswith("    "):
            log(line)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(status="ok", wall_s=wall)
    return result


# ------------------------------------------------------------------------------------- the main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and variants (~1 min on idle cores)")
    parser.add_argument("--images", type=int, default=None,
                        help="images per timed call of (a) and (b) in the main comparison (default 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved rounds of the main comparison (default 6; --quick 2)")
    parser.add_argument("--data", choices=("random", "digits"), default="random",
                        help="input images: uniform noise in [-1, 1] or the digits data set")
    parser.add_argument("--compile-timeout", type=float, default=None,
                        help="seconds allowed for the torch.compile probe (default 180; --quick 90)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for everything except the explicit thread "
                             "variants (default: torch's own default, normally the core count)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile probe")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loss_attack.json"),
                        help="where to write all numbers as JSON")
    parser.add_argument("--_compile-probe", dest="compile_probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.compile_probe is not None:
        spec = json.loads(args.compile_probe)
        print(json.dumps(compile_probe(**spec)))
        return 0

    quick = args.quick
    n_images = args.images or 1
    repeats = args.repeats or (2 if quick else 5)
    compile_timeout = args.compile_timeout or (90.0 if quick else 180.0)
    if args.threads:
        torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    log = print

    model = make_model()
    fam = get_family(FAMILY)
    x = make_images(max(n_images, 12), args.data)
    xs = x[:n_images]
    steps = fam.attack_steps(1000)
    base_threads = torch.get_num_threads()
    cpu = PROFILES["cpu"]
    report: dict = dict(
        machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                     torch_threads=base_threads, platform=platform.platform(),
                     loadavg_start=list(os.getloadavg()) if hasattr(os, "getloadavg") else None),
        setup=dict(model=PRESET, parameters=n_parameters(model), resolution=RESOLUTION, channels=CHANNELS,
                   family=FAMILY, data=args.data, images=n_images, repeats=repeats, quick=quick,
                   default_batch_size=DEFAULT_BATCH, paper_chunk=PAPER_CHUNK),
    )
    log(f"P1 loss attack benchmark: {PRESET} UNet ({n_parameters(model) / 1e6:.2f}M params), "
        f"{RESOLUTION}x{RESOLUTION}x{CHANNELS}, {FAMILY}; {n_images} image(s) x 1000 steps; "
        f"best/median of {repeats}; torch {torch.__version__}, {base_threads} threads, "
        f"load avg {os.getloadavg()[0]:.2f}")

    # --- (c) sweep: the UNet's best batch size -------------------------------------------------
    log("\n[1] (c) raw UNet forward, batch-size sweep (inference_mode)")
    sweep_sizes = (64, 256, 1024) if quick else (64, 128, 256, 512, 1024, 2048)
    sweep = race({f"(c) bs={bs}": (*forward_case(model, bs, 1024), None) for bs in sweep_sizes},
                 1 if quick else 2, log)
    best_bs = max(sweep_sizes, key=lambda bs: sweep[f"(c) bs={bs}"]["best_rate"])
    report["forward_sweep"] = sweep
    report["forward_best_batch"] = best_bs
    log(f"    -> best batch size {best_bs}")

    # --- main comparison: (a) vs (b) vs (c), interleaved ---------------------------------------
    log(f"\n[2] main comparison, interleaved: (a) ours, (b) paper loop, (c) bare forward at bs={best_bs}")
    one = x[:1]
    main_cases = {
        "a": (lambda: run_ours(model, fam, xs, steps), 1000 * n_images,
              lambda: run_ours(model, fam, one, steps), None),
        "b": (lambda: run_paper(model, fam, xs), 1000 * n_images,
              lambda: run_paper(model, fam, one, n_steps=PAPER_CHUNK), None),
        "c": (*forward_case(model, best_bs, 1000 * n_images), None),
    }
    if best_bs != DEFAULT_BATCH:  # (a) again at the UNet's best batch size: isolates the attack's own overhead
        main_cases["a@best"] = (lambda: run_ours(model, fam, xs, steps, batch_size=best_bs), 1000 * n_images,
                                lambda: run_ours(model, fam, one, steps[:best_bs], batch_size=best_bs), None)
    main_res = race(main_cases, repeats, log)
    ra, rb, rc = (main_res[k]["best_rate"] for k in "abc")
    ra_best = main_res["a@best"]["best_rate"] if "a@best" in main_res else ra
    report["main"] = main_res

    # noise generation share of (a): the same image_noise calls loss_scores makes, alone
    t0 = time.perf_counter()
    for i in range(n_images):
        attacks.image_noise(0, i, (1000, 1, CHANNELS, RESOLUTION, RESOLUTION))
    noise_s = time.perf_counter() - t0
    a_time = 1000 * n_images / ra
    report["noise_generation"] = dict(seconds=noise_s, share_of_a=noise_s / a_time)

    # --- the cpu profile's default attack setting ----------------------------------------------
    n_steps_cpu, n_noise_cpu, batch_cpu = cpu["attack_steps"], cpu["n_noise"], cpu["attack_batch"]
    per_image = n_steps_cpu * n_noise_cpu
    n_prof = 3 if quick else 6
    steps_cpu = fam.attack_steps(n_steps_cpu)
    log(f"\n[3] cpu profile setting: {n_steps_cpu} steps x {n_noise_cpu} draws = {per_image} evals/image, "
        f"batch {batch_cpu}, {n_prof} images")
    # loss_scores packs batch_size // 164 whole images per forward pass: 512 -> 492, 328 -> 328 ...
    prof_batches = [batch_cpu] + ([] if quick else [2 * per_image, per_image])
    prof = race({f"(a) cpu-profile setting, batch_size={bs}": (
        lambda bs=bs: run_ours(model, fam, x[:n_prof], steps_cpu, n_noise_cpu, bs), per_image * n_prof,
        lambda bs=bs: run_ours(model, fam, x[:3], steps_cpu, n_noise_cpu, bs), None) for bs in prof_batches},
        1 if quick else 2, log)
    prof_main = prof[f"(a) cpu-profile setting, batch_size={batch_cpu}"]
    report["cpu_profile"] = dict(prof_main, evals_per_image=per_image, batch_size=batch_cpu,
                                 images_in_profile=cpu["n_members"] + cpu["n_nonmembers"],
                                 batch_size_variants=prof)

    # --- what helps: batch size, threads, channels_last ----------------------------------------
    log("\n[4] variants for (a) and (c) (each timed side by side with its baseline)")
    var_images = 1
    xv = x[:var_images]
    var_repeats = 1 if quick else 2
    batch_sizes = (256, 1000) if quick else (128, 256, 1000)
    cl_model = ChannelsLast(make_model())
    fwd_c = forward_case(model, best_bs, 1024)
    fwd_cl = forward_case(cl_model.model, best_bs, 1024, memory_format=torch.channels_last)

    def warm(m, bs=DEFAULT_BATCH):  # one batch of the attack's shape is enough to warm up
        return lambda: run_ours(m, fam, x[:1], steps[:min(bs, 1000)], batch_size=bs)

    a_base = f"(a) batch_size={DEFAULT_BATCH} (default), {base_threads} thread(s)"
    c_base = f"(c) bs={best_bs}, {base_threads} thread(s)"
    other_threads = 1 if base_threads != 1 else 2
    variant_cases = {a_base: (lambda: run_ours(model, fam, xv, steps), 1000 * var_images, warm(model), base_threads)}
    for bs in batch_sizes:
        variant_cases[f"(a) batch_size={bs}"] = (
            lambda bs=bs: run_ours(model, fam, xv, steps, batch_size=bs), 1000 * var_images, warm(model, bs), None)
    variant_cases.update({
        f"(a) {other_threads} thread(s)": (lambda: run_ours(model, fam, xv, steps), 1000 * var_images,
                                           warm(model), other_threads),
        "(a) channels_last": (lambda: run_ours(cl_model, fam, xv, steps), 1000 * var_images, warm(cl_model), None),
        c_base: (*fwd_c, base_threads),
        f"(c) bs={best_bs}, {other_threads} thread(s)": (*fwd_c, other_threads),
        f"(c) bs={best_bs}, channels_last": (*fwd_cl, None),
    })
    variants = race(variant_cases, var_repeats, log)
    report["variants"] = variants

    # --- torch.compile, in a subprocess with a hard time limit ----------------------------------
    if args.no_compile:
        comp = dict(status="skipped")
    else:
        log(f"\n[5] torch.compile (subprocess, limit {compile_timeout:.0f} s)")
        comp = try_compile(best_bs, 1, 1 if quick else 2, base_threads, compile_timeout, log)
        if comp["status"] != "ok":
            log(f"    torch.compile {comp['status']}: {comp['detail']}")
        else:
            log(f"    compile time: forward {comp['compile_forward_s']:.1f} s, "
                f"attack shapes {comp['compile_attack_s']:.1f} s")
    report["compile"] = comp

    # --- summary -------------------------------------------------------------------------------
    total = time.perf_counter() - start_all
    sec_per_image = per_image / ra
    summary = dict(
        a_rate=ra, b_rate=rb, c_rate=rc, a_over_c=ra / rc, a_over_b=ra / rb,
        a_at_best_batch_rate=ra_best, a_at_best_batch_over_c=ra_best / rc,
        cpu_profile_evals_per_image=per_image,
        cpu_profile_seconds_per_image_at_a_rate=sec_per_image,
        cpu_profile_seconds_per_image_measured=per_image / prof_main["best_rate"],
        cpu_profile_attack_minutes_at_a_rate=report["cpu_profile"]["images_in_profile"] * sec_per_image / 60,
        total_runtime_s=total,
    )
    base_a = variants[a_base]["best_rate"]
    base_c = variants[c_base]["best_rate"]
    speedups = {k: v["best_rate"] / (base_a if k.startswith("(a)") else base_c) for k, v in variants.items()}
    if "forward_speedup" in comp:
        speedups["(c) torch.compile"] = comp["forward_speedup"]
    if comp.get("status") == "ok":
        r = comp["rates"]
        speedups["(a) torch.compile"] = r["(a) loss_scores compiled"]["best_rate"] / \
            r["(a) loss_scores eager"]["best_rate"]
    for bs in prof_batches[1:]:
        speedups[f"(a) cpu-profile setting, batch_size={bs} (vs {batch_cpu})"] = \
            prof[f"(a) cpu-profile setting, batch_size={bs}"]["best_rate"] / prof_main["best_rate"]
    summary["variant_speedups"] = speedups
    report["summary"] = summary

    log("\n" + "=" * 78)
    log(f"{'case':<58s}{'eval/s (best)':>14s}")
    log("-" * 78)
    log(f"{'(a) miakit.attacks.loss_scores, 1000 steps, bs=' + str(DEFAULT_BATCH):<58s}{ra:>14.0f}")
    log(f"{'(b) paper loop, 1 image at a time, chunks of 200, .tolist()':<58s}{rb:>14.0f}")
    log(f"{'(c) bare UNet forward, inference_mode, bs=' + str(best_bs):<58s}{rc:>14.0f}")
    if "a@best" in main_res:
        log(f"{'(a) again with batch_size=' + str(best_bs) + ' (the UNet best)':<58s}{ra_best:>14.0f}")
    log("-" * 78)
    log(f"{'(a)/(c)  ours vs the UNet alone':<58s}{ra / rc:>14.2f}")
    log(f"{'(a)/(b)  ours vs the paper loop':<58s}{ra / rb:>14.2f}")
    if "a@best" in main_res:
        log(f"{'(a)/(c)  with batch_size=' + str(best_bs) + ' (overhead of the attack itself)':<58s}"
            f"{ra_best / rc:>14.2f}")
    log(f"{'noise generation share of (a)':<58s}{noise_s / a_time:>13.2%}")
    log("-" * 78)
    log(f"cpu profile ({n_steps_cpu} steps x {n_noise_cpu} draws = {per_image} evals/image):")
    log(f"{'  seconds per image at the rate of (a)':<58s}{sec_per_image:>14.3f}")
    log(f"{'  seconds per image measured (batch ' + str(batch_cpu) + ')':<58s}"
        f"{summary['cpu_profile_seconds_per_image_measured']:>14.3f}")
    log(f"{'  whole profile attack (' + str(report['cpu_profile']['images_in_profile']) + ' images), minutes':<58s}"
        f"{summary['cpu_profile_attack_minutes_at_a_rate']:>14.1f}")
    log("-" * 78)
    log("speed-up vs baseline (same run, side by side; >1 = faster):")
    for k, v in speedups.items():
        log(f"  {k:<56s}{v:>14.2f}")
    if comp.get("status") not in ("ok", "skipped"):
        log(f"  torch.compile: {comp['status']} - {comp['detail']}")
    log("=" * 78)
    log(f"total runtime {total:.0f} s; load avg at end {os.getloadavg()[0]:.2f}")

    report["machine"]["loadavg_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    log(f"numbers written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
