"""Benchmark P2: how fast and how accurate is miakit's batched likelihood, against the paper's loop?

Everything runs side by side in ONE process, on the SAME trained ``cpu``-profile DDPM target
(loaded from ``runs/`` via ``miakit.train.ensure``; 16x16 digits) and the SAME images (the first
``--images``/2 test members and the first test nonmembers), with the SAME Hutchinson probe per
image (``miakit.likelihood._probes(seed, i, ...)``, i = the image's position in the tensor).

(1) ours: ``miakit.likelihood.likelihood`` (torchdiffeq, whole batch in one ODE, drift and
    divergence from one forward + one backward pass) at dopri5 rtol=atol=1e-5 (the paper's
    tolerance), 1e-4, 1e-3, and fixed-step RK4 through torchdiffeq, once on a grid UNIFORM in t
    (``options={"step_size": ...}``) and once on a grid quadratic in t (fine near t = eps, via
    ``options={"grid_constructor": ...}``). Fixed steps are not error-controlled: their |dbpd|
    column is the honest measure of what they cost in accuracy.
(2) the paper loop: a faithful re-implementation of score_sde's ``likelihood.py`` as used by
    Hu & Pang: ``scipy.integrate.solve_ivp(method="RK45", rtol=atol=1e-5)`` from eps = 1e-5 to 1,
    ONE image at a time, the state (x, delta log p) a flat float64 numpy vector converted to a
    float32 torch tensor and back at EVERY evaluation, t as a float32 vector, the drift evaluated
    once under no_grad and then AGAIN inside ``get_div_fn`` under ``enable_grad`` for the
    Hutchinson divergence (network: 2 forwards + 1 backward per evaluation),
    logp = prior_logp(z) + delta. It uses miakit's ``family.ode_drift`` so that |dbpd| measures
    the solver and the loop only (see the note on the drift below).

Reported per setting: images/s, the speed ratio to the paper loop (>1 = ours faster), mean and
max |delta bits/dim| against the paper loop (same images, same probes), NFE per image, and the
cost of one drift+divergence evaluation per image (seconds per image-evaluation). With
``--batch`` > 0 ours is also timed (except at dopri5 1e-5 and uniform rk4, to keep the run short) on a batch of that many images (throughput; no accuracy
column there, the paper loop is not run on them). The P2 target is >= 20x the paper loop at
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
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miakit import config, train  # noqa: E402
from miakit.likelihood import BPD_OFFSET, _probes, likelihood  # noqa: E402

TARGET_RATIO, TARGET_DBPD = 20.0, 0.01
NO_BATCH = {"dopri5 1e-5", "rk4 uniform 50"}  # too slow for the default run's time budget


# ------------------------------------------------------------------------------ the paper loop

def paper_likelihood(model, fam, x, seed=0, rtol=1e-5, atol=1e-5, eps=1e-5):
    """score_sde's likelihood_fn, one image at a time. Returns (bpd, nfev) per image."""
    from scipy import integrate

    shape = (1, *x.shape[1:])
    dims = int(np.prod(shape[1:]))

    def drift_fn(sample, vec_t):
        return fam.ode_drift(model, sample, vec_t)

    def div_fn(sample, vec_t, epsilon):  # score_sde's get_div_fn: the drift is evaluated again
        with torch.enable_grad():
            sample.requires_grad_(True)
            fn_eps = torch.sum(drift_fn(sample, vec_t) * epsilon)
            grad_fn_eps = torch.autograd.grad(fn_eps, sample)[0]
        sample.requires_grad_(False)
        return torch.sum(grad_fn_eps * epsilon, dim=tuple(range(1, len(sample.shape))))

    bpds, nfes = [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            data = x[i:i + 1].float()
            epsilon = _probes(seed, i, (1, *shape), "rademacher")[0]

            def ode_func(t, state):
                sample = torch.from_numpy(state[:-shape[0]].reshape(shape)).type(torch.float32)
                vec_t = torch.ones(sample.shape[0]) * t
                drift = drift_fn(sample, vec_t).detach().cpu().numpy().reshape((-1,))
                logp_grad = div_fn(sample, vec_t, epsilon).detach().cpu().numpy().reshape((-1,))
                return np.concatenate([drift, logp_grad], axis=0)

            init = np.concatenate([data.cpu().numpy().reshape((-1,)), np.zeros((shape[0],))], axis=0)
            solution = integrate.solve_ivp(ode_func, (eps, 1.0), init, rtol=rtol, atol=atol, method="RK45")
            zp = solution.y[:, -1]
            z = torch.from_numpy(zp[:-shape[0]].reshape(shape)).type(torch.float32)
            delta_logp = torch.from_numpy(zp[-shape[0]:]).type(torch.float32)
            bpd = -(fam.prior_logp(z) + delta_logp) / np.log(2) / dims + BPD_OFFSET
            bpds.append(float(bpd[0]))
            nfes.append(int(solution.nfev))
    return np.array(bpds), np.array(nfes)


# ------------------------------------------------------------------------------------ helpers

def quadratic_grid(n):
    def construct(func, y0, t):
        s = torch.linspace(0, 1, n + 1, dtype=t.dtype, device=t.device)
        return t[0] + (t[-1] - t[0]) * s ** 2
    return construct


def settings(quick):
    rows = [("dopri5 1e-5", dict(method="dopri5", rtol=1e-5, atol=1e-5)),
            ("dopri5 1e-4", dict(method="dopri5", rtol=1e-4, atol=1e-4)),
            ("dopri5 1e-3", dict(method="dopri5", rtol=1e-3, atol=1e-3))]
    for n in ([] if quick else [50]):
        rows.append((f"rk4 uniform {n}", dict(method="rk4", options={"step_size": (1 - 1e-5) / n})))
    for n in [12, 25]:
        rows.append((f"rk4 quad-grid {n}", dict(method="rk4", options={"grid_constructor": quadratic_grid(n)})))
    return rows


def timed_ours(model, fam, x, kw, seed):
    t0 = time.perf_counter()
    res = likelihood(model, fam, x, seed=seed, batch_size=max(64, x.shape[0]), progress_bar=False, **kw)
    return res, time.perf_counter() - t0


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


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
    model, fam = run.model, run.family
    n_mem = (n_img + 1) // 2
    idx = np.concatenate([run.split.members_test[:n_mem], run.split.nonmembers_test[:n_img - n_mem]])
    x = run.images(idx).float()
    print(f"target {run.dir.name} ({fam.name}, {run.settings.target.model}), {n_img} images "
          f"({n_mem} members, {n_img - n_mem} nonmembers) {tuple(x.shape[1:])}, threads {torch.get_num_threads()}")

    # warm-up (first autograd call is slow)
    likelihood(model, fam, x[:1], method="rk4", options={"step_size": 0.5}, progress_bar=False)

    print(f"paper loop (scipy RK45 1e-5, one image at a time) on {n_img} images ...", flush=True)
    t0 = time.perf_counter()
    p_bpd, p_nfe = paper_likelihood(model, fam, x, seed=args.seed)
    p_time = time.perf_counter() - t0
    paper = dict(name="paper loop RK45 1e-5", time_s=p_time, img_per_s=n_img / p_time,
                 nfe_per_img=float(p_nfe.mean()), s_per_img_eval=p_time / p_nfe.sum(), bpd=p_bpd.tolist())

    rows = []
    for name, kw in settings(args.quick):
        print(f"ours {name} ...", flush=True)
        res, dt = timed_ours(model, fam, x, kw, args.seed)
        d = np.abs(res.bpd - p_bpd)
        row = dict(name=name, time_s=dt, img_per_s=n_img / dt, ratio=(n_img / dt) / paper["img_per_s"],
                   mean_dbpd=float(d.mean()), max_dbpd=float(d.max()), nfe_per_img=float(res.nfe.mean()),
                   s_per_img_eval=dt / (res.nfe.mean() * n_img), bpd=res.bpd.tolist())
        if n_batch and name not in NO_BATCH:
            xb = run.images(np.concatenate([run.split.members_test, run.split.nonmembers_test])[:n_batch]).float()
            resb, dtb = timed_ours(model, fam, xb, kw, args.seed)
            row.update(batch=n_batch, batch_img_per_s=n_batch / dtb,
                       batch_ratio=(n_batch / dtb) / paper["img_per_s"], batch_nfe=float(resb.nfe.mean()),
                       batch_s_per_img_eval=dtb / (resb.nfe.mean() * n_batch))
        best = max(row["ratio"], row.get("batch_ratio", 0.0))
        row["meets_p2"] = bool(best >= TARGET_RATIO and row["mean_dbpd"] <= TARGET_DBPD)
        rows.append(row)

    # ------------------------------------------------------------------------------- table
    hdr = (f"{'setting':<22}{'img/s':>8}{'x paper':>9}{'mean|dbpd|':>12}{'max|dbpd|':>11}{'NFE/img':>9}"
           f"{'ms/img-eval':>13}")
    if n_batch:
        hdr += f"{'img/s@' + str(n_batch):>11}{'x paper@' + str(n_batch):>12}{'ms/img-eval@' + str(n_batch):>16}"
    hdr += f"{'P2':>6}"
    print()
    print(hdr)
    print("-" * len(hdr))
    line = (f"{paper['name']:<22}{paper['img_per_s']:>8.3f}{1.0:>9.2f}{'(ref)':>12}{'(ref)':>11}"
            f"{paper['nfe_per_img']:>9.0f}{paper['s_per_img_eval'] * 1e3:>13.2f}")
    if n_batch:
        line += f"{'-':>11}{'-':>12}{'-':>16}"
    print(line + f"{'':>6}")
    for r in rows:
        line = (f"{'ours ' + r['name']:<22}{r['img_per_s']:>8.3f}{r['ratio']:>9.2f}{r['mean_dbpd']:>12.4f}"
                f"{r['max_dbpd']:>11.4f}{r['nfe_per_img']:>9.0f}{r['s_per_img_eval'] * 1e3:>13.2f}")
        if n_batch and "batch" not in r:
            line += f"{'-':>11}{'-':>12}{'-':>16}"
        elif n_batch:
            line += (f"{r['batch_img_per_s']:>11.3f}{r['batch_ratio']:>12.2f}"
                     f"{r['batch_s_per_img_eval'] * 1e3:>16.2f}")
        print(line + f"{'yes' if r['meets_p2'] else 'no':>6}")
    print()
    print(f"paper loop bpd per image: {np.round(p_bpd, 4).tolist()}  (NFE {p_nfe.tolist()})")
    print("paper loop evaluation = 2 UNet forwards + 1 backward on 1 image, plus numpy<->torch copies; "
          "ours = 1 forward + 1 backward on the whole batch")
    print(f"P2 target: >= {TARGET_RATIO:.0f}x the paper loop (at {n_img} images, or on a batch of {n_batch}) "
          f"with mean |dbpd| <= {TARGET_DBPD} against it")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(images=idx.tolist(), n_members=n_mem, threads=torch.get_num_threads(),
                                   seed=args.seed, torch=torch.__version__, python=platform.python_version(),
                                   paper=paper, ours=rows,
                                   target=dict(ratio=TARGET_RATIO, mean_dbpd=TARGET_DBPD)), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
