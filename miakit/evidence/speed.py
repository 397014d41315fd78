"""Side-by-side speed comparisons that the book shows and the benchmark scripts print.

``paper_likelihood`` is a faithful re-implementation of how the paper's code (score_sde's
``likelihood.py``) computes log p: ``scipy.integrate.solve_ivp(method="RK45")`` from eps = 1e-5
to 1, ONE image at a time, the state (x, delta log p) a flat float64 numpy vector converted to a
float32 torch tensor and back at EVERY evaluation, the drift evaluated once under no_grad and
then AGAIN for the Hutchinson divergence (2 network forwards + 1 backward per evaluation). It
uses miakit's ``family.ode_drift`` and the same Hutchinson probe per image as
``miakit.diffusion.likelihood``, so the difference between the two measures the solver and the loop only.

``likelihood_speed`` times both on the same images in one process and reports images/s, the
ratio (> 1 = miakit faster), the mean and max |delta bits/dim| against the paper loop, ODE
evaluations per image and the cost of one evaluation per image.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from miakit.diffusion import Family
from miakit.diffusion.unet import device_of
from miakit.diffusion.likelihood import BPD_OFFSET, _probes, likelihood
from miakit.core.progress import progress

NOT_COMPARED = {True: "(the reference)", False: "(not compared)"}  # |d bits/dim| of the paper loop / a timing-only row
# target P2: at least this many times the paper loop's images/s at this mean |d bits/dim|
P2_RATIO, P2_MEAN_DBPD = 20.0, 0.01
PAPER_TOLERANCE = 1e-5


def profile_settings(method: str, rtol: float, atol: float) -> dict[str, dict]:
    """miakit's likelihood at a profile's solver settings and at the paper's tolerance."""
    out = {f"{method} {rtol:g}/{atol:g} (this profile)": dict(method=method, rtol=rtol, atol=atol)}
    if (method, rtol, atol) != ("dopri5", PAPER_TOLERANCE, PAPER_TOLERANCE):
        out[f"dopri5 {PAPER_TOLERANCE:g} (the paper's tolerance)"] = dict(
            method="dopri5", rtol=PAPER_TOLERANCE, atol=PAPER_TOLERANCE)
    return out


def paper_likelihood(model, family: Family, x: torch.Tensor, seed: int = 0, rtol: float = 1e-5,
                     atol: float = 1e-5, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """score_sde's likelihood_fn, one image at a time: (bits/dim, evaluations) per image."""
    from scipy import integrate

    shape = (1, *x.shape[1:])
    dims = int(np.prod(shape[1:]))

    def drift_fn(sample, vec_t):
        return family.ode_drift(model, sample, vec_t)

    def div_fn(sample, vec_t, epsilon):  # score_sde's get_div_fn: the drift is evaluated again
        with torch.enable_grad():
            sample.requires_grad_(True)
            fn_eps = torch.sum(drift_fn(sample, vec_t) * epsilon)
            grad_fn_eps = torch.autograd.grad(fn_eps, sample)[0]
        sample.requires_grad_(False)
        return torch.sum(grad_fn_eps * epsilon, dim=tuple(range(1, len(sample.shape))))

    device = device_of(model, x.device)  # the solver's state lives in numpy, the network on its device
    bpds, nfes = [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            epsilon = _probes(seed, i, (1, *shape), "rademacher")[0].to(device)

            def ode_func(t, state):
                sample = torch.from_numpy(state[:-shape[0]].reshape(shape)).type(torch.float32).to(device)
                vec_t = torch.ones(sample.shape[0], device=device) * t
                drift = drift_fn(sample, vec_t).detach().cpu().numpy().reshape((-1,))
                logp_grad = div_fn(sample, vec_t, epsilon).detach().cpu().numpy().reshape((-1,))
                return np.concatenate([drift, logp_grad], axis=0)

            init = np.concatenate([x[i].float().cpu().numpy().reshape((-1,)), np.zeros((shape[0],))])
            solution = integrate.solve_ivp(ode_func, (eps, 1.0), init, rtol=rtol, atol=atol, method="RK45")
            zp = solution.y[:, -1]
            z = torch.from_numpy(zp[:-shape[0]].reshape(shape)).type(torch.float32)
            delta_logp = torch.from_numpy(zp[-shape[0]:]).type(torch.float32)
            bpd = -(family.prior_logp(z) + delta_logp) / np.log(2) / dims + BPD_OFFSET
            bpds.append(float(bpd[0]))
            nfes.append(int(solution.nfev))
    return np.array(bpds), np.array(nfes)


@dataclass
class SpeedRow:
    name: str
    seconds: float
    images: int
    nfe_per_image: float
    bpd: list = field(default_factory=list)
    ratio: float = 1.0  # images/s over the paper loop's
    mean_dbpd: float | None = None  # |bits/dim - paper loop's| on the same images and probes
    max_dbpd: float | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds

    @property
    def ms_per_image_evaluation(self) -> float:
        return 1e3 * self.seconds / (self.nfe_per_image * self.images)


@dataclass
class LikelihoodSpeed:
    paper: SpeedRow
    ours: list[SpeedRow]
    threads: int

    def table(self):
        """One row per setting: throughput, ratio to the paper loop, agreement, cost, and whether
        the setting meets P2 (on its own row, counting its batch row's ratio)."""
        import pandas as pd

        rows = {}
        for r in [self.paper, *self.ours]:
            compared = r is not self.paper and r.mean_dbpd is not None
            rows[r.name] = {"images": r.images, "images/s": r.images_per_second, "x paper loop": r.ratio,
                            "mean |d bits/dim|": round(r.mean_dbpd, 4) if compared else NOT_COMPARED[r is self.paper],
                            "max |d bits/dim|": round(r.max_dbpd, 4) if compared else NOT_COMPARED[r is self.paper],
                            "ODE evaluations per image": r.nfe_per_image,
                            "ms per image-evaluation": r.ms_per_image_evaluation,
                            "meets P2": ("yes" if self.meets_p2(r.name) else "no") if compared else ""}
        return pd.DataFrame(rows).T.infer_objects().round(4)

    def best_ratio(self, name: str) -> float:
        """The best speed ratio of setting ``name`` (on the compared images or on a batch)."""
        return max(r.ratio for r in self.ours if r.name.split(" [")[0] == name)

    def row(self, name: str) -> SpeedRow:
        return next(r for r in self.ours if r.name == name)

    def headline(self) -> dict:
        """The numbers the book quotes, for the first setting (the profile's own)."""
        own = self.ours[0]
        return {"ratio": self.best_ratio(own.name), "threads": self.threads, "dbpd": own.mean_dbpd,
                "met": "yes" if self.meets_p2(own.name) else "no",
                "ms_ours": own.ms_per_image_evaluation, "ms_paper": self.paper.ms_per_image_evaluation,
                "nfe_ours": own.nfe_per_image, "nfe_paper": self.paper.nfe_per_image}

    def meets_p2(self, name: str) -> bool:
        """Target P2: >= 20x the paper loop (on the compared images or a batch) while agreeing
        with it to a mean |d bits/dim| <= 0.01."""
        return self.best_ratio(name) >= P2_RATIO and self.row(name).mean_dbpd <= P2_MEAN_DBPD


def likelihood_speed(model, family: Family, x: torch.Tensor, settings: dict[str, dict] | None = None,
                     x_batch: torch.Tensor | None = None, skip_batch: tuple[str, ...] = (),
                     seed: int = 0) -> LikelihoodSpeed:
    """Time the paper loop (rtol = atol = 1e-5) and miakit's ``likelihood`` with each of
    ``settings`` (name -> keyword arguments) on the same images ``x``, side by side. With
    ``x_batch``, every setting except those named in ``skip_batch`` is also timed on that larger
    batch (throughput only: the paper loop is not run on it), in a row called "name [batch n]"."""
    settings = settings or profile_settings("dopri5", 1e-3, 1e-3)
    likelihood(model, family, x[:1], method="rk4", options={"step_size": 0.5}, progress_bar=False)  # warm-up
    began = time.perf_counter()
    p_bpd, p_nfe = paper_likelihood(model, family, x, seed=seed)
    paper = SpeedRow("paper loop (scipy RK45 1e-5, one image at a time)", time.perf_counter() - began,
                     x.shape[0], float(p_nfe.mean()), p_bpd.tolist())
    ours = []
    for name, kwargs in settings.items():
        res, seconds = _timed(model, family, x, kwargs, seed)
        d = np.abs(res.bpd - p_bpd)
        row = SpeedRow(name, seconds, x.shape[0], float(res.nfe.mean()), res.bpd.tolist(),
                       mean_dbpd=float(d.mean()), max_dbpd=float(d.max()))
        row.ratio = row.images_per_second / paper.images_per_second
        ours.append(row)
        if x_batch is not None and name not in skip_batch:
            res, seconds = _timed(model, family, x_batch, kwargs, seed)
            row = SpeedRow(f"{name} [batch {x_batch.shape[0]}]", seconds, x_batch.shape[0], float(res.nfe.mean()))
            row.ratio = row.images_per_second / paper.images_per_second
            ours.append(row)
    return LikelihoodSpeed(paper, ours, torch.get_num_threads())


def _timed(model, family, x, kwargs, seed):
    began = time.perf_counter()
    res = likelihood(model, family, x, seed=seed, batch_size=max(64, x.shape[0]), progress_bar=False, **kwargs)
    return res, time.perf_counter() - began


def likelihood_speed_of_run(run, n_images: int, n_batch: int = 0, settings: dict[str, dict] | None = None,
                            skip_batch: tuple[str, ...] = (), seed: int = 0) -> LikelihoodSpeed:
    """``likelihood_speed`` on a trained target: the first ceil(n/2) test members and the first
    test nonmembers; with ``n_batch`` > 0 also throughput on that many test images. ``settings``
    defaults to the run's likelihood settings and the paper's tolerance (the latter not timed on
    the batch, which would take long; ``benchmarks/likelihood.py`` does that)."""
    if settings is None:
        c = run.settings.likelihood
        settings = profile_settings(c.lik_method, c.lik_rtol, c.lik_atol)
        skip_batch = tuple(settings)[1:]
    n_mem = (n_images + 1) // 2
    x = run.images(np.concatenate([run.split.members_test[:n_mem], run.split.nonmembers_test[:n_images - n_mem]]))
    x_batch = None
    if n_batch > 0:
        x_batch = run.images(np.concatenate([run.split.members_test, run.split.nonmembers_test])[:n_batch])
    return likelihood_speed(run.model, run.family, x.float(), settings, x_batch, skip_batch, seed)


# ------------------------------------------------------------------ P3: the cost of a DP-SGD step

P3_RATIO = 1.5
ORDINARY = "ordinary step"
# the private step with each per-example gradient engine (miakit.training.dp_sgd.ENGINES); the first trains
DP_ENGINES = {"DP-SGD, book-keeping (miakit)": "book-keeping", "DP-SGD, opacus per-sample gradients": "opacus"}
TRAINED = next(iter(DP_ENGINES))
CHECKS = {"book-keeping": "book-keeping", "opacus": "opacus hooks"}  # engine -> per_sample_gradient_mismatches method


def dp_step_speed(settings, members: torch.Tensor, rounds: int = 10, progress_bar: bool = False) -> DPStepSpeed:
    """P3 side by side: the training loop's ordinary step (``miakit.training.train.StandardStep``) and
    its private step (``miakit.training.dp_sgd.DPSGDStep``) with each engine of ``DP_ENGINES``, for the
    private target ``settings`` on ``members``, each on a fresh copy of the same UNet and a
    generator with the same seed (the private steps draw the same Poisson batches; the ordinary
    one draws the expected batch size times K, the rows a private step processes), timed in ``rounds`` interleaved rounds after a warm-up.
    Each engine's per-example gradients and norms are first checked against a per-example loop
    on 3 members."""
    import dataclasses

    from miakit.training import dp_sgd, train
    from miakit.diffusion import family as get_family
    from miakit.diffusion.unet import pick_device

    t = settings.target
    if not t.dp_sgd:
        raise ValueError("dp_step_speed times a private target: settings.target.trainer must be 'dp-sgd'")
    device = pick_device(settings.device)
    fam, members = get_family(t.family), members.to(device)
    # the ordinary step processes as many rows as the private one: batch x K (DPDM's replicas)
    ordinary = dataclasses.replace(settings, target=dataclasses.replace(
        t, trainer="standard", batch_size=t.batch_size * t.dp_multiplicity))
    verified = {}
    for name, engine in DP_ENGINES.items():
        net = dp_sgd.without_dropout(train._fresh_model(settings, members.shape[1], device).train())
        verified[name] = not dp_sgd.per_sample_gradient_mismatches(net, fam, members[:3], t.dp_multiplicity,
                                                                    method=CHECKS[engine])

    def fresh(s):  # (model, members, generator, device) of one case: the same weights and seed
        return train._fresh_model(s, members.shape[1], device).train(), members, torch.Generator().manual_seed(0), device

    steps = {ORDINARY: train.StandardStep(ordinary, fam, *fresh(ordinary))}
    for name, engine in DP_ENGINES.items():
        steps[name] = dp_sgd.DPSGDStep(settings, fam, *fresh(settings), engine=engine)
    times: dict[str, list[float]] = {name: [] for name in steps}
    try:
        for step in steps.values():
            step.step()  # warm-up
        for _ in progress(range(rounds), desc="P3 rounds", enabled=progress_bar):
            for name, step in steps.items():
                began = time.perf_counter()
                step.step()
                times[name].append(time.perf_counter() - began)
    finally:
        for step in steps.values():
            step.close()
    return DPStepSpeed({name: 1e3 * float(np.median(v)) for name, v in times.items()}, verified, t.batch_size,
                       t.dp_multiplicity, torch.get_num_threads())


@dataclass
class DPStepSpeed:
    """Median milliseconds per training step of each case, measured in interleaved rounds."""

    ms: dict[str, float]
    verified: dict[str, bool]  # DP cases: per-example gradients and norms equal a per-example loop
    batch: int  # the (expected) batch size
    k: int
    threads: int

    def ratio(self, name: str) -> float:
        return self.ms[name] / self.ms[ORDINARY]

    def meets_p3(self) -> bool:
        """Target P3: the DP-SGD step miakit trains with costs <= 1.5x an ordinary step, with
        verified per-example gradients."""
        return bool(self.verified[TRAINED] and self.ratio(TRAINED) <= P3_RATIO)

    def table(self):
        import pandas as pd

        return pd.DataFrame({name: {"ms per step": ms, "x ordinary step": self.ratio(name),
                                    "per-example gradients": "-" if name not in self.verified
                                    else ("verified" if self.verified[name] else "WRONG")}
                             for name, ms in self.ms.items()}).T.infer_objects().round(2)

    def headline(self) -> dict:
        return {"ratio": self.ratio(TRAINED), "met": "yes" if self.meets_p3() else "no",
                "ratio_opacus": self.ratio(next(n for n in DP_ENGINES if n != TRAINED)),
                "ms_private": self.ms[TRAINED], "ms_plain": self.ms[ORDINARY], "batch": self.batch,
                "threads": self.threads}


# --------------------------------------------- issue 11: each attack against the UNet's raw speed

ATTACK_TARGET = 0.9  # every attack at >= 90% of the raw forward throughput


class CountingModel(torch.nn.Module):
    """``model`` that counts the rows (model evaluations) it is asked for."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.evaluations = model, 0

    def forward(self, x, t):
        self.evaluations += x.shape[0]
        return self.model(x, t)


def raw_throughput(model, x: torch.Tensor, t, batch_sizes=(32, 64, 128, 256, 512), repeats: int = 3) -> tuple[float, int]:
    """The UNet's best forward throughput (evaluations per second) over ``batch_sizes``, on
    pre-built inputs under inference mode, and the batch size that gave it."""
    best = (0.0, batch_sizes[0])
    device = device_of(model, x.device)  # the inputs on the model's device, as the attacks put them
    with torch.inference_mode():
        for b in batch_sizes:
            xb = x[:1].to(device).expand(b, *x.shape[1:]).contiguous()
            tb = torch.as_tensor(t, device=device).reshape(1).expand(b).contiguous()
            model(xb, tb)  # warm-up
            began = time.perf_counter()
            for _ in range(repeats):
                model(xb, tb)
            rate = b * repeats / (time.perf_counter() - began)
            best = max(best, (rate, b))
    return best


@dataclass
class AttackSpeed:
    """Each attack's model evaluations per second against the UNet's raw forward limit."""

    limit: float  # evaluations per second of the bare forward pass at its best batch size
    limit_batch: int
    rate: dict[str, float]  # attack -> evaluations per second over its whole grid
    evaluations_per_image: dict[str, float]
    threads: int

    def share(self, name: str) -> float:
        return self.rate[name] / self.limit

    def table(self):
        import pandas as pd

        return pd.DataFrame({name: {"evaluations / s": r, "share of raw forward": self.share(name),
                                    "evaluations / image (grid)": self.evaluations_per_image[name],
                                    f"meets >= {ATTACK_TARGET:.0%}": "yes" if self.share(name) >= ATTACK_TARGET else "no"}
                             for name, r in self.rate.items()}).T.infer_objects().round(3)


def attack_speed(model, family, x: torch.Tensor, names, settings, batch_size: int | None = None) -> AttackSpeed:
    """Side by side in one process: the UNet's raw forward limit, then every attack in ``names``
    over its profile grid on images ``x`` (evaluations counted by wrapping the model), each at
    ``batch_size`` evaluations per forward pass (default: the limit's best batch size)."""
    from miakit import attacks

    probe = family.from_paper_step(500)
    limit, limit_batch = raw_throughput(model, x, probe)
    counter = CountingModel(model)
    rate, per_image = {}, {}
    for name in names:
        grid = attacks.get(name).grid(settings)
        refs = (counter,) * settings.attack.n_references  # the reference attack's references: the same UNet, counted
        context = attacks.Context(ids=np.arange(x.shape[0]), batch_size=batch_size or limit_batch, references=refs)
        attacks.score(name, counter, family, x[:2], grid, attacks.Context(ids=np.arange(2), batch_size=8,
                                                                          references=refs))  # warm-up
        counter.evaluations = 0
        began = time.perf_counter()
        attacks.score(name, counter, family, x, grid, context)
        rate[name] = counter.evaluations / (time.perf_counter() - began)
        per_image[name] = counter.evaluations / x.shape[0]
    return AttackSpeed(limit, limit_batch, rate, per_image, torch.get_num_threads())


@dataclass
class StepTiming:
    """Median seconds of one ordinary training step and of one loss-attack batch of a profile's
    UNet on a device, on random images of the profile's shape (speed does not depend on pixels)."""

    profile: str
    device: str
    precision: str
    batch_size: int
    step_seconds: float
    attack_batch: int
    attack_seconds: float
    losses_finite: bool = True  # every timed step's training loss was finite

    @property
    def seconds_per_image_step(self) -> float:
        return self.step_seconds / self.batch_size

    @property
    def seconds_per_evaluation(self) -> float:
        return self.attack_seconds / self.attack_batch


def step_timing(settings, channels: int = 3, repeats: int = 10, n_images: int = 256,
                precision=None) -> StepTiming:
    """Time ``settings``' training step (``train.StandardStep``) and one loss-attack batch of
    ``attack_batch`` evaluations, each ``repeats`` times after a warm-up, synchronising the GPU
    around each; at ``precision`` (a ``models.Precision``), by default the device's (the GPU
    check also times the fp16 path a T4 takes on a GPU that would choose bf16)."""
    from miakit.training import train
    from miakit.diffusion import family as get_family
    from miakit.diffusion.unet import autocast, pick_device

    device = pick_device(settings.device)
    d, t = settings.data, settings.target
    gen = torch.Generator().manual_seed(0)
    members = (torch.rand(n_images, channels, d.resolution, d.resolution, generator=gen) * 2 - 1).to(device)
    model = train._fresh_model(settings, channels, device).train()
    fam = get_family(t.family)
    step = train.StandardStep(settings, fam, model, members, gen, device, precision)

    def timed(fn) -> float:
        fn()  # warm-up (allocations, autotuning)
        out = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out.append(time.perf_counter() - began)
        return float(np.median(out))

    losses = []
    try:
        step_seconds = timed(lambda: losses.append(step.step()))
    finally:
        step.close()
    model.eval()
    b = settings.attack.attack_batch
    x0 = members[torch.arange(b) % n_images]
    steps = fam.sample_train_t(b, gen, device)
    noise = torch.randn(x0.shape, generator=gen).to(device)

    @torch.inference_mode()
    def attack_batch():
        with autocast(device, step.precision):
            fam.loss(model, x0, steps, noise)

    return StepTiming(settings.profile, str(device), step.precision.name, t.batch_size, step_seconds, b,
                      timed(attack_batch), bool(np.isfinite(losses).all()))
