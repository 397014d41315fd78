"""Train target diffusion models: EMA, optional flips, resumable safetensors checkpoints.

``ensure(settings)`` is idempotent: the run folder is keyed by the hash of everything that
determines the weights, so a second call (from any notebook) loads the finished run instead of
training again, and a call after a crash resumes from the last checkpoint with the same result
an uninterrupted run would have given.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import data as data_mod
from .config import Settings, stable_hash
from .diffusion import Family, family as get_family
from .models import autocast, build_unet, ema as make_ema, n_parameters, pick_device
from .progress import progress
from .store import CorruptRunError, read_json, read_tensors, write_json, write_tensors

CHECKPOINT = "checkpoint.safetensors"
FINAL = "final.safetensors"
SNAPSHOTS = "snapshots"  # EMA weights along the way: snapshots/ema-<iteration>.safetensors


@dataclass
class Run:
    """A trained target: its settings, data split, EMA model and training record."""

    settings: Settings
    dir: Path
    family: Family
    model: torch.nn.Module  # EMA weights, eval mode, on ``device``
    dataset: data_mod.Dataset
    split: data_mod.Split
    history: dict = field(default_factory=dict)
    device: torch.device = torch.device("cpu")

    def images(self, indices: np.ndarray) -> torch.Tensor:
        return self.dataset.images[torch.as_tensor(indices, dtype=torch.long)]

    def snapshot_iterations(self) -> list[int]:
        """Iterations whose EMA weights were kept (``snapshot_every``), the final one included."""
        found = {int(p.stem.split("-")[1]) for p in (self.dir / SNAPSHOTS).glob("ema-*.safetensors")}
        return sorted(found | {self.settings.target.iterations})

    def model_at(self, iteration: int) -> torch.nn.Module:
        """The EMA model as it was after ``iteration`` training iterations (eval mode)."""
        if iteration == self.settings.target.iterations:
            return self.model
        path = _snapshot_path(self.dir, iteration)
        if not path.exists():
            raise FileNotFoundError(
                f"{self.dir} kept no snapshot at iteration {iteration} (it has {self.snapshot_iterations()}); "
                f"snapshots are written while training with snapshot_every > 0: remove the folder to retrain")
        tensors = _read_checked(path, self.settings)
        net = _fresh_model(self.settings, self.dataset.images.shape[1], self.device)
        net.load_state_dict({k.removeprefix("ema.module."): v for k, v in tensors.items()
                             if k.startswith("ema.module.")})
        return net.eval()

    def samples(self, n: int = 16, seed: int = 0, n_steps: int | None = None) -> torch.Tensor:
        """``n`` generated images in [-1, 1], cached in the run folder."""
        n_steps = n_steps or self.family.n_steps
        # the plain samplers keep their original file names; any other sampler gets its own key
        plain = self.family.sampler in ("ancestral", "euler-maruyama")
        sampler = "" if plain else "-" + stable_hash({"sampler": self.family.sampler}, 6)
        path = self.dir / f"samples-n{n}-steps{n_steps}-seed{seed}{sampler}.safetensors"
        if path.exists():
            return read_tensors(path)["samples"]
        shape = (n, *self.dataset.images.shape[1:])
        with torch.inference_mode(), autocast(self.device):
            x = self.family.sample(self.model, shape, torch.Generator().manual_seed(seed), n_steps, self.device)
        x = x.float().clamp(-1, 1).cpu()
        write_tensors(path, {"samples": x})
        return x


def run_dir(settings: Settings) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", settings.data.dataset).strip("-")[:40]
    return Path(settings.runs_dir) / f"{settings.target.family}-{slug}-{settings.target_hash()}"


def ensure(settings: Settings, progress_bar: bool = True) -> Run:
    """The trained target for ``settings``: loaded if finished, else trained (resuming if possible)."""
    folder = run_dir(settings)
    device = pick_device(settings.device)
    dataset = data_mod.load(settings.data.dataset, settings.data.resolution)
    split = _ensure_split(settings, folder, len(dataset))
    fam = get_family(settings.target.family)
    model = _fresh_model(settings, dataset.images.shape[1], device)
    if not (folder / FINAL).exists():
        members = dataset.images[torch.as_tensor(split.members)]
        if settings.target.dp_sgd:
            from .privacy import train_private

            train_private(settings, folder, fam, model, members, device, progress_bar)
        else:
            _train(settings, folder, fam, model, members, device, progress_bar)
    final = _read_checked(folder / FINAL, settings)
    ema_model = make_ema(model, settings.target.ema_decay)
    ema_model.load_state_dict({k.removeprefix("ema."): v for k, v in final.items() if k.startswith("ema.")})
    net = ema_model.module.to(device).eval()
    history = read_json(folder / "history.json")
    return Run(settings, folder, fam, net, dataset, split, history, device)


def _fresh_model(settings: Settings, channels: int, device: torch.device) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.target.train_seed)  # the initial weights depend on the seed alone
        return build_unet(settings.target.model, settings.target.family, settings.data.resolution, channels).to(device)


def _snapshot_path(folder: Path, iteration: int) -> Path:
    return folder / SNAPSHOTS / f"ema-{iteration:08d}.safetensors"


def ensure_all(settings: Settings, progress_bar: bool = True) -> dict[str, Run]:
    """One trained target per family in ``settings.families``, same data, split and budget."""
    return {name: ensure(settings.for_family(name), progress_bar) for name in settings.family_names()}


def samples(runs: dict[str, Run], n: int, n_steps: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` generated images from each target (cached in each run folder)."""
    return {name: run.samples(n, seed, n_steps) for name, run in runs.items()}


def _ensure_split(settings: Settings, folder: Path, n_total: int) -> data_mod.Split:
    d = settings.data
    path = folder / "split.json"
    if path.exists():
        split = data_mod.load_split(path)
        if split.dataset != d.dataset or split.n_total != n_total:
            raise CorruptRunError(f"{path} was made for {split.dataset!r} with {split.n_total} images, "
                                  f"not {d.dataset!r} with {n_total}; remove {folder} to start over")
        return split
    split = data_mod.make_split(d.dataset, n_total, d.n_members, d.n_nonmembers, d.val_fraction, d.split_seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", {"target_hash": settings.target_hash(), **settings.flat()})
    data_mod.save_split(split, path)
    return split


def _read_checked(path: Path, settings: Settings) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    tensors = read_tensors(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("target_hash") != settings.target_hash():
        raise CorruptRunError(f"{path} belongs to configuration {meta.get('target_hash')!r}, not "
                              f"{settings.target_hash()!r}; remove it to retrain")
    return tensors


def _save_checkpoint(path: Path, settings: Settings, iteration: int, model, ema_model, optimizer,
                     batch_gen: torch.Generator, losses: list[float]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema_model.state_dict().items()})
    for idx, state in optimizer.state_dict()["state"].items():
        tensors.update({f"opt.{idx}.{k}": torch.as_tensor(v) for k, v in state.items()})
    tensors["rng.batch"] = batch_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["history.loss"] = torch.tensor(losses, dtype=torch.float32)
    write_tensors(path, tensors, {"target_hash": settings.target_hash(), "iteration": str(iteration)})


def _load_checkpoint(path: Path, settings: Settings, model, ema_model, optimizer,
                     batch_gen: torch.Generator) -> tuple[int, list[float]]:
    from safetensors import safe_open

    tensors = _read_checked(path, settings)
    with safe_open(str(path), framework="pt") as fh:
        iteration = int(fh.metadata()["iteration"])
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema_model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as err:
        raise CorruptRunError(f"{path} does not fit this model: {err}") from err
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    batch_gen.set_state(tensors["rng.batch"])
    torch.set_rng_state(tensors["rng.torch"])
    return iteration, tensors["history.loss"].tolist()


def _train(settings: Settings, folder: Path, fam: Family, model: torch.nn.Module,
           members: torch.Tensor, device: torch.device, progress_bar: bool) -> None:
    t = settings.target
    torch.manual_seed(t.train_seed)  # dropout
    batch_gen = torch.Generator().manual_seed(t.train_seed)  # batches, flips, steps, noise
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    ema_model = make_ema(model, t.ema_decay)
    start, losses = 0, []
    if (folder / CHECKPOINT).exists():
        start, losses = _load_checkpoint(folder / CHECKPOINT, settings, model, ema_model, optimizer, batch_gen)
    members = members.to(device)
    model.train()
    began = time.perf_counter()
    bar = progress(range(start, t.iterations), total=t.iterations, initial=start,
                   desc=f"train {t.family}", enabled=progress_bar)
    iteration = start
    try:
        for iteration in bar:
            loss = _step(fam, model, optimizer, members, batch_gen, t, iteration, device)
            ema_model.update_parameters(model)
            losses.append(loss)
            if iteration % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            done = iteration + 1
            if t.snapshot_every and done % t.snapshot_every == 0 and done < t.iterations:
                snapshot(folder, settings, done, ema_model)
            if (iteration + 1) % t.checkpoint_every == 0 and iteration + 1 < t.iterations:
                _save_checkpoint(folder / CHECKPOINT, settings, iteration + 1, model, ema_model,
                                 optimizer, batch_gen, losses)
    except KeyboardInterrupt:
        done = len(losses)
        _save_checkpoint(folder / CHECKPOINT, settings, done, model, ema_model, optimizer, batch_gen, losses)
        raise
    finally:
        bar.close()
    finish(folder, settings, model, ema_model, losses, {
        "resumed_from": start, "train_seconds_this_session": time.perf_counter() - began,
        "n_members": int(members.shape[0]), "device": str(device)})


def finish(folder: Path, settings: Settings, model, ema_model, losses: list[float], record: dict) -> None:
    """Write a finished run: final weights (EMA and raw) and its training record."""
    tensors = {f"ema.{k}": v for k, v in ema_model.state_dict().items()}
    tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    write_json(folder / "history.json", {"loss": losses, "iterations": settings.target.iterations,
                                         "n_parameters": n_parameters(model), **record})
    write_tensors(folder / FINAL, tensors, {"target_hash": settings.target_hash(), "iteration": str(settings.target.iterations)})
    (folder / CHECKPOINT).unlink(missing_ok=True)


def snapshot(folder: Path, settings: Settings, iteration: int, ema_model) -> None:
    """Keep the EMA weights after ``iteration`` iterations (``Run.model_at`` reads them back)."""
    write_tensors(_snapshot_path(folder, iteration), {f"ema.{k}": v for k, v in ema_model.state_dict().items()},
                  {"target_hash": settings.target_hash(), "iteration": str(iteration)})


def _step(fam: Family, model, optimizer, members: torch.Tensor, gen: torch.Generator, t, iteration: int,
          device: torch.device) -> float:
    bs = t.batch_size
    idx = torch.randint(0, members.shape[0], (bs,), generator=gen)
    x0 = members[idx.to(device)]
    if t.random_flip:
        flip = (torch.rand(bs, generator=gen) < 0.5).to(device)
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    steps = fam.sample_train_t(bs, gen, device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    for group in optimizer.param_groups:
        group["lr"] = t.lr * min(1.0, (iteration + 1) / max(1, t.warmup))
    with autocast(device):
        loss = fam.loss(model, x0, steps, noise).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if t.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    optimizer.step()
    return float(loss.detach())
