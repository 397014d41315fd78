"""DP-SGD for diffusion targets: per-example clipping by book-keeping, opacus' noise and accountant.

The private step (``DPSGDStep``) clips each example's gradient with ``miakit.training.clipping``
(book-keeping and the mixed ghost norm of Bu et al. 2023: one backward pass, no per-example
gradients kept for the whole model) and hands the clipped sum to opacus'
``DPOptimizerFastGradientClipping``, which adds the Gaussian noise, scales and steps; opacus'
accountant (PRV, or RDP at very large epsilon) calibrates the noise and records every step.
``per_sample_gradient_mismatches`` checks every parameter's per-example gradient, and the
norms, against a per-example loop (``tests/test_privacy.py``).

Two things here are specific to diffusion models:

- **Noise multiplicity** (DPDM, Dockhorn et al. 2022): each example's loss is the mean over K
  (t, noise) draws *before* clipping. The batch holds K replicas of every example
  (``replicate``); the example's gradient is that of the mean of its replicas' losses, so one
  gradient per example is clipped, noised and accounted, whatever K is.
- **Opacus' own per-sample gradients on diffusers' UNet** (kept for comparison in
  ``benchmarks/dp_step.py``): diffusers' attention blocks return tensors with non-standard
  strides, and opacus' rule for convolutions (``unfold2d``, built on ``as_strided``) assumes a
  contiguous input: on opacus 1.6 / diffusers 0.42 it silently returned ZERO per-sample
  gradients for the convs downstream of attention. ``contiguous_conv_inputs`` fixes it with a
  forward pre-hook on every ``Conv2d``; ``merge_replicas`` averages opacus' per-replica
  gradients into per-example ones.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings
from pathlib import Path

import torch

from miakit.diffusion.unet import FLOAT32
from miakit.training.train import augment, optimizer_for

# opacus scales its noise by the clipping norm (noise_multiplier * max_grad_norm), so "no clipping"
# is a finite bound that no per-example gradient norm reaches (an infinite one would make 0 * inf)
NO_CLIPPING = 1e12
# the PRV accountant is the tighter one, but its calibration stalls (minutes) at very large
# epsilon; above this budget the RDP accountant calibrates the noise instead
PRV_UP_TO = 200.0


def accountant(epsilon: float) -> str:
    """The opacus accountant that calibrates the noise for ``epsilon``."""
    return "prv" if epsilon <= PRV_UP_TO else "rdp"


def contiguous_conv_inputs(model: torch.nn.Module) -> list:
    """Make every Conv2d of ``model`` see a contiguous input; returns the hook handles."""

    def hook(_module, args):
        return tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)

    return [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every dropout probability set to 0 (in place), so that a per-example loop
    sees the same network as the batch."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def replicate(x0: torch.Tensor, k: int) -> torch.Tensor:
    """Each example ``k`` times in a row: [B, ...] -> [B * k, ...] (example-major)."""
    return x0.repeat_interleave(k, dim=0)


def merge_replicas(module: torch.nn.Module, k: int) -> None:
    """Average the per-sample gradients of each example's ``k`` consecutive replicas, in place
    (``p.grad_sample`` [B * k, ...] -> [B, ...]), before opacus clips them."""
    if k == 1:
        return
    for p in module.parameters():
        gs = getattr(p, "grad_sample", None)
        if gs is None:
            continue
        if gs.shape[0] % k:
            raise RuntimeError(f"per-sample gradient batch {gs.shape[0]} is not a multiple of K = {k}")
        p.grad_sample = gs.reshape(gs.shape[0] // k, k, *gs.shape[1:]).mean(dim=1)


def replica_loss(family, model, x0: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The family's training loss on ``k`` (t, noise) draws per example: [B * k] per-replica
    losses, example-major (the mean over an example's k replicas is its DPDM loss)."""
    x = replicate(x0, k)
    t = family.sample_train_t(x.shape[0], generator, x.device)
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    return family.loss(model, x, t, noise)


METHODS = ("book-keeping", "opacus hooks", "opacus functorch")
ENGINES = ("book-keeping", "opacus")  # how DPSGDStep clips: miakit.training.clipping (training), opacus' per-sample gradients


@contextlib.contextmanager
def _without_tf32():
    """Full float32 matmuls and cuDNN convolutions inside, the flags restored after: TF32 (on
    for matmuls from ``models.pick_device`` on Ampere and later, on for cuDNN convolutions by
    PyTorch's default) rounds products to a 10-bit mantissa, as coarse as the check's rtol, so two
    correct computations of the same gradient would disagree on a GPU. No effect on the CPU."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@_without_tf32()
def per_sample_gradient_mismatches(model: torch.nn.Module, family, x0: torch.Tensor, k: int = 1, seed: int = 0,
                                   method: str = "book-keeping", contiguous: bool = True,
                                   rtol: float = 1e-3) -> list[str]:
    """Names of the parameters whose per-example gradient differs from a per-example loop on a
    copy of ``model``; [] = all agree. ``method``: ``book-keeping`` (what training uses,
    ``miakit.training.clipping``: its per-example gradients and norms, the norms reported as "(norms)"),
    or opacus' ``GradSampleModule`` in hooks or functorch mode (replicas merged as in
    ``merge_replicas``; ``contiguous`` applies ``contiguous_conv_inputs``).

    ``model`` must be in train mode without active dropout (the loop must see the same network).
    Computed in full float32 (``_without_tf32``) on every device.
    """
    import copy

    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {METHODS}")
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    x = replicate(x0, k)
    t = family.sample_train_t(x.shape[0], gen, x.device)
    noise = torch.randn(x.shape, generator=gen).to(x.device)  # drawn on the CPU: the same on every device
    norms = None
    if method == "book-keeping":
        from miakit.training.clipping import BookKeeping

        bk = BookKeeping(model, k)
        try:
            norms, got = bk.per_example(bk.forward(lambda: family.loss(model, x, t, noise)))
        finally:
            bk.close()
    else:
        from opacus import GradSampleModule

        handles = contiguous_conv_inputs(model) if contiguous else []
        gsm = GradSampleModule(model, loss_reduction="mean", force_functorch=method == "opacus functorch")
        try:
            family.loss(gsm, x, t, noise).mean().backward()
            merge_replicas(gsm, k)
            got = {name: p.grad_sample for name, p in model.named_parameters() if p.requires_grad}
        finally:
            gsm._close()
            for h in handles:
                h.remove()
    expected: dict[str, list] = {name: [] for name in got}
    for i in range(x0.shape[0]):
        reference.zero_grad()
        rows = slice(i * k, (i + 1) * k)
        family.loss(reference, x[rows], t[rows], noise[rows]).mean().backward()
        for name, p in reference.named_parameters():
            if p.requires_grad:
                expected[name].append(p.grad.clone())
    wrong = []
    for name, grads in expected.items():
        ref, g = torch.stack(grads), got[name]
        if g is None or g.shape != ref.shape or not torch.allclose(g, ref, rtol=rtol, atol=1e-6 + 1e-4 * ref.abs().max()):
            wrong.append(name)
    if norms is not None:
        loop = torch.stack([torch.cat([g[i].flatten() for g in expected.values()]) for i in range(x0.shape[0])])
        if not torch.allclose(norms, torch.linalg.vector_norm(loop.double(), dim=1), rtol=rtol):
            wrong.append("(norms)")
    return wrong


def noise_multiplier(target, sample_rate: float, store=None) -> float:
    """The noise multiplier that makes ``target.iterations`` Poisson-sampled steps at
    ``sample_rate`` spend ``target.dp_epsilon`` at ``target.dp_delta`` (0 for epsilon = inf).

    The calibration takes the PRV accountant 10-40 s on this CPU, and every process that trains
    a private arm needed it again (the build's training processes, the chapters' kernels). With
    ``store`` (a run store's folder) it is kept there, one JSON per (epsilon, delta, sample rate,
    steps, accountant, opacus version), written once under a lock: the first process computes it,
    the others read it."""
    if not math.isfinite(target.dp_epsilon):
        return 0.0
    args = (target.dp_epsilon, target.dp_delta, sample_rate, max(1, target.iterations))
    if store is None:
        return _calibrated(*args)
    import opacus

    from miakit.core import store as store_mod
    from miakit.core.config import stable_hash

    key = {"epsilon": args[0], "delta": args[1], "sample_rate": args[2], "steps": args[3],
           "accountant": accountant(args[0]), "opacus": opacus.__version__}
    folder = Path(store) / "accountant"
    path = folder / f"noise-multiplier-{stable_hash(key, 16)}.json"
    if not path.exists():
        with store_mod.lock(folder):
            if not path.exists():
                store_mod.write_json(path, {**key, "noise_multiplier": _calibrated(*args)})
    stored = store_mod.read_json(path)
    if {k: stored[k] for k in key} != key:
        raise store_mod.CorruptRunError(f"{path} holds the noise multiplier of {stored}, not of {key}: remove it")
    return float(stored["noise_multiplier"])


@functools.lru_cache(maxsize=64)
def _calibrated(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    # the PRV calibration takes seconds: the seeds and resumes of one process share it
    from opacus.accountants.utils import get_noise_multiplier

    with _quiet_rdp():
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=accountant(epsilon)))


@contextlib.contextmanager
def _quiet_rdp():
    """Silence opacus' "Optimal order is the largest alpha" warning, expected here: the RDP
    accountant is used only at budgets too large for PRV (``accountant``), where its best order
    sits at the end of its alpha range. The bound it gives there is valid, only looser (the noise
    is calibrated to a conservative epsilon), so the warning says nothing a reader can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield


@functools.cache
def _summing_optimizer():
    """opacus' ``DPOptimizerFastGradientClipping`` (it takes gradients already clipped and
    summed, adds the noise, scales and steps), accumulating physical batches with a tensor
    clone where opacus uses ``copy.deepcopy`` per parameter (the same values; the deepcopy cost
    a tenth of a small UNet's step on CPU)."""
    from opacus.optimizers import DPOptimizerFastGradientClipping

    class SummingOptimizer(DPOptimizerFastGradientClipping):
        def accumulate(self):
            for p in self.params:
                if p.summed_grad is not None:
                    p.summed_grad.add_(p.grad.data)
                else:
                    p.summed_grad = p.grad.detach().clone()

    return SummingOptimizer


class DPSGDStep:
    """The private step of the one training loop (``miakit.training.train._train``), with opacus.

    Each step draws a Poisson batch (every member independently with probability
    ``sample_rate = batch_size / n_members``, from the loop's generator, as opacus'
    ``UniformWithReplacementSampler`` does), splits it into physical batches of at most
    ``dp_physical_batch`` examples, and clips each example's gradient (the mean over its
    ``dp_multiplicity`` replicas, DPDM's K) at ``dp_max_grad_norm`` by book-keeping
    (``miakit.training.clipping``); opacus' ``DPOptimizerFastGradientClipping`` sums the physical batches'
    clipped gradients, adds Gaussian noise calibrated by the accountant (``noise_multiplier``)
    and takes the Adam step; the accountant
    (PRV, or RDP above epsilon 200) records the step. An empty Poisson batch takes a noise-only
    step. The run is exactly ``iterations`` steps.

    With ``dp_epsilon = inf`` no noise is added (the clipping-only arm) and with
    ``dp_max_grad_norm = inf`` as well nothing is clipped (the non-private arm of the same code:
    same sampling, batch size, K and steps). Unclipped, every example's factor ``min(1, C /
    norm)`` is 1, so the clipped sum is the batch's ordinary gradient: the book-keeping engine
    then takes one plain backward pass of the summed example losses and forms no per-example
    norm (1.3x faster than book-keeping at the cpu profile's step on one thread, timed side by
    side in interleaved rounds); the run key says so (``miakit.training.train.DP_UNCLIPPED``).

    ``engine="opacus"`` clips with opacus' own per-sample gradients (``GradSampleModule`` and
    ``DPOptimizer``) instead: the same step at its former cost, for ``benchmarks/dp_step.py``.

    Its state (noise generator, accountant history) goes into the loop's checkpoints, so a
    private run resumes after a crash exactly where it stopped, and spends the same epsilon.
    """

    name = "dp-sgd"

    def __init__(self, settings, family, model: torch.nn.Module, members: torch.Tensor,
                 generator: torch.Generator, device: torch.device, engine: str = "book-keeping"):
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.optimizers import DPOptimizer

        from miakit.training.clipping import BookKeeping

        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r}; choose one of {ENGINES}")
        t = self.t = settings.target
        self.family, self.model, self.members, self.gen, self.device = family, model, members, generator, device
        n = members.shape[0]
        self.sample_rate = min(1.0, t.batch_size / n)
        self.engine = engine
        if engine == "book-keeping":  # unclipped: the plain batch gradient is the clipped sum (no hooks)
            self.clipper = BookKeeping(model, t.dp_multiplicity) if math.isfinite(t.dp_max_grad_norm) else None
            optimizer = _summing_optimizer()
        else:  # opacus' per-sample gradients, for comparison (benchmarks/dp_step.py)
            self.handles = contiguous_conv_inputs(model)
            self.gsm, optimizer = GradSampleModule(model, loss_reduction="mean"), DPOptimizer
        self.noise_gen = torch.Generator(device=device).manual_seed(t.train_seed + 1)  # DP-SGD's Gaussian noise
        self.clip = t.dp_max_grad_norm if math.isfinite(t.dp_max_grad_norm) else NO_CLIPPING
        self.sigma = noise_multiplier(t, self.sample_rate, settings.runs_dir)
        self.base_optimizer = optimizer_for(model, t)
        # book-keeping: opacus' optimizer for gradients clipped before it sees them (it sums the
        # physical batches' clipped gradients, adds the noise, divides by the expected batch size)
        self.optimizer = optimizer(
            self.base_optimizer, noise_multiplier=self.sigma, max_grad_norm=self.clip,
            expected_batch_size=max(1, round(n * self.sample_rate)), loss_reduction="mean", generator=self.noise_gen)
        self.accountant = create_accountant(accountant(t.dp_epsilon) if math.isfinite(t.dp_epsilon) else "rdp")
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self.empty_batches = 0

    def step(self) -> float | None:
        """One logical DP-SGD step; the mean per-replica loss of its batch (None if it was empty)."""
        t = self.t
        chosen = torch.nonzero(torch.rand(self.members.shape[0], generator=self.gen) < self.sample_rate).flatten()
        x0 = augment(self.members[chosen.to(self.device)], t, self.gen)  # each example before its gradient is clipped
        if x0.shape[0] == 0:
            self.empty_batches += 1
            for p in self.optimizer.params:
                if self.engine == "book-keeping":
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return None
        chunks = x0.split(t.dp_physical_batch)
        total, count = 0.0, 0
        for i, chunk in enumerate(chunks):
            self.optimizer.signal_skip_step(do_skip=i < len(chunks) - 1)
            self.optimizer.zero_grad(set_to_none=True)
            if self.engine == "book-keeping" and self.clipper is None:  # unclipped: sum_i g_i, one backward
                loss = replica_loss(self.family, self.model, chunk, t.dp_multiplicity, self.gen)
                (loss.sum() / t.dp_multiplicity).backward()  # an example's loss is its replicas' mean
            elif self.engine == "book-keeping":
                loss = self.clipper.forward(lambda: replica_loss(self.family, self.model, chunk, t.dp_multiplicity,
                                                                 self.gen))
                self.clipper.clip(loss, self.clip)
            else:
                loss = replica_loss(self.family, self.gsm, chunk, t.dp_multiplicity, self.gen)
                with warnings.catch_warnings():
                    # opacus' backward hooks fire on module outputs because the input needs no gradient
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    loss.mean().backward()
                merge_replicas(self.gsm, t.dp_multiplicity)
            self.optimizer.step()
            total, count = total + float(loss.detach().sum()), count + loss.shape[0]
        return total / count

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        history = [list(h) for h in self.accountant.history]
        return ({"rng.noise": self.noise_gen.get_state()},
                {"accountant": json.dumps(history), "empty_batches": str(self.empty_batches)})

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        self.noise_gen.set_state(tensors["rng.noise"])
        self.accountant.history = [tuple(h) for h in json.loads(meta["accountant"])]
        self.empty_batches = int(meta["empty_batches"])

    def epsilon_spent(self) -> float:
        """The epsilon the accountant reports for the steps taken so far (inf without noise)."""
        if not math.isfinite(self.t.dp_epsilon) or not self.accountant.history:
            return math.inf
        with _quiet_rdp():
            return float(self.accountant.get_epsilon(self.t.dp_delta))

    def record(self) -> dict:
        t = self.t
        return {"precision": FLOAT32.name,  # per-example clipping in float32 on every device
                "dp": {"epsilon_spent": self.epsilon_spent(), "target_epsilon": t.dp_epsilon, "delta": t.dp_delta,
                       "noise_multiplier": self.sigma, "max_grad_norm": t.dp_max_grad_norm,
                       "sample_rate": self.sample_rate, "steps": t.iterations, "empty_batches": self.empty_batches,
                       "noise_multiplicity": t.dp_multiplicity, "accountant": self.accountant.mechanism()}}

    def close(self) -> None:
        if self.engine == "book-keeping":
            if self.clipper is not None:
                self.clipper.close()
        else:
            for h in self.handles:
                h.remove()
            self.gsm._close()
