"""DP-SGD for diffusion targets with opacus: per-sample gradients, noise multiplicity, accounting.

Two things here are specific to diffusion models:

- **Contiguous conv inputs.** diffusers' attention blocks return tensors with non-standard
  strides, and opacus' per-sample rule for convolutions (``unfold2d``, built on ``as_strided``)
  assumes a contiguous input: on opacus 1.6 / diffusers 0.42 it silently returned ZERO
  per-sample gradients for the convs downstream of attention. ``contiguous_conv_inputs``
  registers a forward pre-hook on every ``Conv2d`` that makes its input contiguous; pre-hooks
  run before opacus' activation-capturing forward hooks, so both see the fixed tensor.
  ``tests/test_privacy.py`` checks every parameter's per-sample gradient against a loop.
- **Noise multiplicity** (DPDM, Dockhorn et al. 2022): each example's loss is the mean over K
  (t, noise) draws *before* clipping. The batch holds K replicas of every example; after the
  backward pass ``merge_replicas`` averages each example's K per-replica gradients into one, so
  opacus clips, noises and accounts one gradient per example, whatever K is.
"""
from __future__ import annotations

import torch


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


def per_sample_gradient_mismatches(model: torch.nn.Module, family, x0: torch.Tensor, k: int = 1, seed: int = 0,
                                   contiguous: bool = True, rtol: float = 1e-3,
                                   force_functorch: bool = False) -> list[str]:
    """Names of the parameters whose per-sample gradient from opacus (hooks mode, or functorch
    for every layer; replicas merged as in training) differs from a per-example loop on a copy
    of ``model``; [] = all agree.

    ``model`` must be in train mode without active dropout (the loop must see the same network).
    """
    import copy

    from opacus import GradSampleModule

    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    x = replicate(x0, k)
    t = family.sample_train_t(x.shape[0], gen)
    noise = torch.randn(x.shape, generator=gen)
    handles = contiguous_conv_inputs(model) if contiguous else []
    gsm = GradSampleModule(model, loss_reduction="mean", force_functorch=force_functorch)
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
    return wrong


def train_private(settings, folder, family, model: torch.nn.Module, members: torch.Tensor, device: torch.device,
                  progress_bar: bool = True) -> None:
    """Train ``model`` on ``members`` with DP-SGD (opacus) and write the run like ``train`` does.

    Poisson sampling at rate 1 / ceil(N / batch_size), per-example clipping at
    ``dp_max_grad_norm``, Gaussian noise calibrated by opacus' accountant so that the whole
    run, rounded up to whole epochs, spends ``dp_epsilon`` at ``dp_delta``. Each example's loss
    averages ``dp_multiplicity`` (t, noise) draws before clipping. The epsilon the accountant
    reports at the end is recorded in the run's history.

    The same loop trains the matched baselines of the privacy study: ``dp_epsilon = inf`` adds
    no noise (clipping only), and ``dp_max_grad_norm = inf`` as well clips nothing (the
    non-private baseline with the same sampling, batch size, K and steps). An interrupted run of
    this loop restarts from scratch (its sampler and accountant state are not checkpointed).
    """
    import math
    import time
    import warnings

    import numpy as np
    from opacus import PrivacyEngine
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from torch.utils.data import DataLoader, TensorDataset

    from .models import ema as make_ema
    from .progress import progress
    from .train import finish, snapshot

    t = settings.target
    torch.manual_seed(t.train_seed)
    gen = torch.Generator().manual_seed(t.train_seed)  # Poisson batches, steps and noise of the loss
    noise_gen = torch.Generator(device=device).manual_seed(t.train_seed + 1)  # DP-SGD's Gaussian noise
    ema_model = make_ema(model, t.ema_decay)  # before opacus hooks the model: the EMA copy carries none
    handles = contiguous_conv_inputs(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    loader = DataLoader(TensorDataset(members.cpu()), batch_size=t.batch_size, generator=gen)
    epochs = math.ceil(t.iterations / len(loader))
    engine = PrivacyEngine(accountant=accountant(t.dp_epsilon))
    clip = t.dp_max_grad_norm if math.isfinite(t.dp_max_grad_norm) else NO_CLIPPING
    common = dict(module=model, optimizer=optimizer, data_loader=loader, max_grad_norm=clip, poisson_sampling=True,
                  noise_generator=noise_gen)
    if math.isfinite(t.dp_epsilon):
        dp_model, optimizer, loader = engine.make_private_with_epsilon(
            target_epsilon=t.dp_epsilon, target_delta=t.dp_delta, epochs=epochs, **common)
    else:  # a matched baseline: no noise
        dp_model, optimizer, loader = engine.make_private(noise_multiplier=0.0, **common)
    model.train()
    losses: list[float] = []
    began = time.perf_counter()
    bar = progress(total=epochs * len(loader), desc=f"train {t.family} (DP, eps={t.dp_epsilon:g})", enabled=progress_bar)
    def step(x0: torch.Tensor) -> float | None:
        """One physical batch; the mean loss when it completed a logical step, else None."""
        for group in optimizer.param_groups:
            group["lr"] = t.lr * min(1.0, (len(losses) + 1) / max(1, t.warmup))
        loss = replica_loss(family, dp_model, x0.to(device), t.dp_multiplicity, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        merge_replicas(dp_model, t.dp_multiplicity)
        optimizer.step()
        return None if optimizer._is_last_step_skipped else float(loss.detach().mean())

    # opacus' backward hooks fire on module outputs because the input needs no gradient: harmless
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        try:
            for _ in range(epochs):
                with BatchMemoryManager(data_loader=loader, max_physical_batch_size=t.dp_physical_batch,
                                        optimizer=optimizer) as batches:
                    # an empty Poisson batch is skipped: that spends less privacy, not more
                    done = (step(x0) for (x0,) in batches if x0.shape[0] > 0)
                    for loss in (value for value in done if value is not None):  # logical steps only
                        ema_model.update_parameters(model)
                        losses.append(loss)
                        bar.update(1)
                        if t.snapshot_every and len(losses) % t.snapshot_every == 0:
                            snapshot(folder, settings, len(losses), ema_model)
                        if len(losses) % 50 == 0:
                            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        finally:
            bar.close()
            for h in handles:
                h.remove()
    dp_model._close()
    finish(folder, settings, model, ema_model, losses, {
        "train_seconds_this_session": time.perf_counter() - began, "n_members": int(members.shape[0]),
        "device": str(device), "dp": {
            "epsilon_spent": float(engine.get_epsilon(t.dp_delta)) if math.isfinite(t.dp_epsilon) else math.inf,
            "target_epsilon": t.dp_epsilon, "delta": t.dp_delta, "noise_multiplier": float(optimizer.noise_multiplier),
            "max_grad_norm": t.dp_max_grad_norm, "sample_rate": 1 / len(loader), "epochs": epochs,
            "steps": len(losses), "noise_multiplicity": t.dp_multiplicity, "accountant": accountant(t.dp_epsilon)}})
