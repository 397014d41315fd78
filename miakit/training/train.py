"""Train target diffusion models: one training loop, resumable, locked and checked.

``ensure(settings)`` is idempotent: the run folder is keyed by everything that determines the
weights (``run_key``: the settings, the family's hyperparameters, the UNet the preset resolves
to, the content of the member images and the run format), so a second call, from any notebook
or process, loads the finished run instead of training again; a call after a crash resumes from
the last checkpoint with the result an uninterrupted run would have given.

There is one loop (``_train``). What differs between the ordinary and the private trainer is
the step: ``StandardStep`` here (fixed-size batches drawn with replacement, one global
gradient-norm clip) or ``miakit.training.dp_sgd.DPSGDStep`` (opacus: Poisson batches, per-example
clipping, Gaussian noise, an accountant). Seeding, warm-up, the EMA, snapshots, checkpoints,
resume, Ctrl-C and divergence are written once, here.

- **Ctrl-C** inside a step is deferred to the end of the step: the step finishes, a checkpoint
  is written and ``KeyboardInterrupt`` is raised, so the resumed run is bit-identical to an
  uninterrupted one (a second Ctrl-C stops at once and the run resumes from its last periodic
  checkpoint). **SIGKILL** loses the steps since the last checkpoint, never the result.
- **Divergence**: a non-finite loss stops training with ``TrainingDiverged`` at that
  iteration; nothing non-finite is ever written (``miakit.core.store``).
- **Locks**: two processes that ensure the same run do not both train it; the second waits
  and loads the first one's result.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from miakit.core import colab, seeding
from miakit.core import data as data_mod
from miakit.core.config import Settings, stable_hash
from miakit.diffusion import Family, family as get_family
from miakit.diffusion.unet import Precision, architecture, autocast, build_unet, ema as make_ema, n_parameters, pick_device
from miakit.diffusion.unet import precision as device_precision
from miakit.core.progress import progress
from miakit.core.store import (CHECKSUM, CorruptRunError, clean_orphans, lock, read_arrays, read_json, read_metadata, read_tensors,
                    write_arrays, write_cache, write_json, write_tensors)

CHECKPOINT = "checkpoint.safetensors"
FINAL = "final.safetensors"
SNAPSHOTS = "snapshots"  # EMA weights along the way: snapshots/ema-<iteration>.safetensors


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or inf."""


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
    # the iteration whose EMA snapshot ``model`` holds when it is not the final weights (``at``)
    released: int | None = None

    def at(self, iteration: int) -> "Run":
        """This run as released after ``iteration`` training iterations (an early-stopped model):
        the same run whose ``model`` is that snapshot's EMA weights; everything cached from it
        (scores, samples) is keyed by that snapshot's weights (``cache_stem``), exactly as
        ``score_split(run, ..., iteration=iteration)`` keys it."""
        if self.released is not None:
            raise ValueError(f"{self.dir.name} is already the model released at iteration {self.released}")
        if iteration == self.settings.target.iterations:
            return self
        return dataclasses.replace(self, model=self.model_at(iteration), released=iteration)

    @property
    def key(self) -> str:
        """The run key (``run_key``), the last part of the folder name."""
        return self.dir.name.rsplit("-", 1)[1]

    def images(self, indices: np.ndarray) -> torch.Tensor:
        return self.dataset.images[torch.as_tensor(indices, dtype=torch.long)]

    def snapshot_iterations(self) -> list[int]:
        """Iterations whose EMA weights were kept (``snapshot_every``), the final one included."""
        found = {int(p.stem.split("-")[1]) for p in (self.dir / SNAPSHOTS).glob("ema-*.safetensors")}
        return sorted(found | {self.settings.target.iterations})

    def model_at(self, iteration: int) -> torch.nn.Module:
        """The EMA model as it was after ``iteration`` training iterations (eval mode)."""
        if self.released is not None:
            if iteration != self.released:
                raise ValueError(f"this view of {self.dir.name} holds the model released at iteration "
                                 f"{self.released}, not {iteration}: ask the run itself")
            return self.model
        if iteration == self.settings.target.iterations:
            return self.model
        path = _snapshot_path(self.dir, iteration)
        if not path.exists():
            raise FileNotFoundError(
                f"{self.dir} kept no snapshot at iteration {iteration} (it has {self.snapshot_iterations()}); "
                f"snapshots are written while training with snapshot_every > 0: remove the folder to retrain")
        tensors = _read_checked(path, self.key, iteration)
        net = _fresh_model(self.settings, self.dataset.images.shape[1], self.device)
        net.load_state_dict({k.removeprefix("ema.module."): v for k, v in tensors.items()
                             if k.startswith("ema.module.")})
        return net.eval()

    def weights_checksum(self, iteration: int | None = None) -> str:
        """The SHA-256 recorded with the weights the run's model at ``iteration`` (default: the
        final model; the released snapshot's for a ``Run.at`` view) was read from: what a cached
        result computed from them is keyed by."""
        iteration = self.released if iteration is None else iteration
        final = iteration is None or iteration == self.settings.target.iterations
        return read_metadata(self.dir / FINAL if final else _snapshot_path(self.dir, iteration))[CHECKSUM]

    def samples(self, n: int = 16, seed: int = 0, n_steps: int | None = None) -> torch.Tensor:
        """``n`` generated images in [-1, 1], cached in the run folder."""
        n_steps = n_steps or self.family.n_steps
        payload = {"n": n, "steps": n_steps, "seed": seed, "sampler": self.family.sampler}

        def generate() -> dict[str, np.ndarray]:
            shape = (n, *self.dataset.images.shape[1:])
            with torch.inference_mode(), autocast(self.device):
                x = self.family.sample(self.model, shape, torch.Generator().manual_seed(seed), n_steps, self.device)
            return {"samples": x.float().clamp(-1, 1).cpu().numpy()}

        return torch.from_numpy(self.cached("samples", payload, {}, generate)["samples"])

    def cache_stem(self, kind: str, payload: dict, images: dict[str, np.ndarray]) -> str:
        """``<kind>-<key>``: the name (without suffix) of the file ``cached`` keeps its arrays in."""
        if self.released is not None:  # a result of the released snapshot is keyed as one of that iteration
            if payload.get("iteration", self.released) != self.released:
                raise ValueError(f"a cache of iteration {payload['iteration']} asked of the model released at "
                                 f"{self.released}")
            payload = {**payload, "iteration": self.released}
        key = stable_hash({"kind": kind, **payload, "draws_format": seeding.FORMAT,
                           "weights": self.weights_checksum(payload.get("iteration")),
                           "images": {name: self.dataset.fingerprint(idx) for name, idx in sorted(images.items())}})
        return f"{kind}-{key}"

    def cached(self, kind: str, payload: dict, images: dict[str, np.ndarray],
               compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The arrays ``compute()`` returns for this run, kept in its folder under a key that
        covers ``payload`` (what is computed and with which settings), the content of the images
        it reads (``images``: a name -> dataset indices), the format of the per-image draws and
        the checksum of the weights it is computed from (``weights_checksum``; the snapshot's when
        ``payload`` names an ``iteration``), so a result is reused only with the weights that
        computed it. The one cache of the package: a second call reads the file (checked against
        its checksum); a read-only store still returns the result, with a warning."""
        path = self.dir / f"{self.cache_stem(kind, payload, images)}.safetensors"
        if path.exists():
            return read_arrays(path)
        arrays = compute()
        write_cache(path, lambda p: write_arrays(p, arrays))
        return arrays


DP_CLIPPING = "book-keeping"  # miakit.training.clipping (before: opacus' per-sample gradients, no key entry)
# the unclipped arms (dp_max_grad_norm = inf): one ordinary backward pass (miakit.training.dp_sgd.DPSGDStep),
# the same sum of gradients as book-keeping's, summed in another order
DP_UNCLIPPED = "batch-backward"


def training_indices(settings: Settings, split: data_mod.Split, reference: int | None = None) -> np.ndarray:
    """The images a run trains on: the split's members for a target, or reference model
    ``reference``'s draw of as many images from outside the evaluated split
    (``Split.reference_members``)."""
    if reference is None:
        return split.members
    return split.reference_members(reference, settings.data.n_members)


def run_key(settings: Settings, dataset: data_mod.Dataset, split: data_mod.Split, reference: int | None = None) -> str:
    """The key of the run ``settings`` train on ``dataset``: a hash of everything that determines
    its weights (the hashed settings, the family's hyperparameters, the resolved UNet
    architecture, the exact training images and the run format)."""
    t = settings.target
    payload = {
        "settings": settings.target_hash(),
        "family": get_family(t.family).hyperparameters(),
        "unet": architecture(t.model, t.family, settings.data.resolution, int(dataset.images.shape[1])),
        "members": dataset.fingerprint(training_indices(settings, split, reference)),
    }
    if t.dp_sgd:  # how per-example gradients are clipped changes the weights (at rounding level)
        payload["dp_clipping"] = DP_CLIPPING if math.isfinite(t.dp_max_grad_norm) else DP_UNCLIPPED
        if t.random_flip or t.random_shift:  # the DP step augments since the defenses (it ignored random_flip)
            payload["dp_augment"] = True
    if t.distill_samples:  # a student never sees the members: it trains on its teacher's samples
        if reference is not None:
            raise ValueError("a reference model trains on images outside the split, not on a teacher's samples: "
                             "distill_samples must be 0 for reference models")
        payload["members"] = None
        payload["teacher"] = run_key(teacher_settings(settings), dataset, split)
        payload["teacher_samples"] = {"seed": DISTILL_SEED, "sampler": get_family(t.family).sampler}
    if reference is not None:
        payload["reference"] = reference
    return stable_hash(payload)


def run_dir(settings: Settings, dataset: data_mod.Dataset | None = None, reference: int | None = None) -> Path:
    """The folder of the run ``settings`` train (the dataset is loaded when not given); of
    reference model ``reference`` when given."""
    dataset = dataset if dataset is not None else data_mod.load(settings.data.dataset, settings.data.resolution)
    split = _split_for(settings, len(dataset))
    slug = re.sub(r"[^A-Za-z0-9]+", "-", settings.data.dataset).strip("-")[:40]
    tag = "" if reference is None else f"ref{reference}-"
    return colab.runs_root(settings.runs_dir) / f"{settings.target.family}-{slug}-{tag}{run_key(settings, dataset, split, reference)}"


# a reference model's training seed: the target's plus this and its index (a seed no target uses,
# since the attacker does not know the target's initial weights or batches)
REFERENCE_SEED_OFFSET = 10_000


# the seed of the images a teacher generates for its student (fixed: the student's key names it)
DISTILL_SEED = 0xD157


def teacher_settings(settings: Settings) -> Settings:
    """The target a distilled student (``distill_samples`` > 0) learns from: the same settings
    trained on the members (``distill_samples = 0``)."""
    return dataclasses.replace(settings, target=dataclasses.replace(settings.target, distill_samples=0))


def teacher_images(settings: Settings, progress_bar: bool = True) -> torch.Tensor:
    """The ``distill_samples`` images a student trains on: generated by its teacher (trained or
    loaded here) with ``distill_steps`` sampler steps, cached in the teacher's run folder. The
    only images of the dataset the student's training reads are none: it sees these."""
    t = settings.target
    if not t.distill_samples:
        raise ValueError("teacher_images is for a distilled student (distill_samples > 0)")
    teacher = ensure(teacher_settings(settings), progress_bar)
    return teacher.samples(t.distill_samples, seed=DISTILL_SEED, n_steps=t.distill_steps)


def reference_settings(settings: Settings, index: int) -> Settings:
    """The settings reference model ``index`` of ``settings``' target trains with: the same
    recipe, its own training seed."""
    seed = settings.target.train_seed + REFERENCE_SEED_OFFSET + index
    return dataclasses.replace(settings, target=dataclasses.replace(settings.target, train_seed=seed))


def ensure_references(settings: Settings, progress_bar: bool = True) -> list[Run]:
    """``settings.attack.n_references`` reference models of ``settings``' target (the
    reference-model attack): each trains with the target's recipe and its own seed on images
    drawn from outside the evaluated split, so none has seen an image any attack scores."""
    return [ensure(reference_settings(settings, r), progress_bar, reference=r)
            for r in range(settings.attack.n_references)]


def ensure(settings: Settings, progress_bar: bool = True, reference: int | None = None) -> Run:
    """The trained target for ``settings``: loaded if finished, else trained (resuming if
    possible). With ``reference``, the reference model of that index (``ensure_references``)."""
    device = pick_device(settings.device)
    dataset = data_mod.load(settings.data.dataset, settings.data.resolution)
    folder = run_dir(settings, dataset, reference)
    key = folder.name.rsplit("-", 1)[1]
    fam = get_family(settings.target.family)
    model = _fresh_model(settings, dataset.images.shape[1], device)
    if (folder / FINAL).exists():  # a finished run is read without the lock (files are replaced atomically)
        split = _ensure_split(settings, folder, len(dataset), key)
    else:
        with lock(folder):
            clean_orphans(folder)
            split = _ensure_split(settings, folder, len(dataset), key)
            if not (folder / FINAL).exists():  # another process may have finished it while we waited
                if settings.target.distill_samples:
                    images = teacher_images(settings, progress_bar)  # a student reads no member
                else:
                    images = dataset.images[torch.as_tensor(training_indices(settings, split, reference))]
                _train(settings, key, folder, fam, model, images, device, progress_bar)
    final = _read_checked(folder / FINAL, key, settings.target.iterations)
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


def ensure_all(settings: Settings, progress_bar: bool = True, executor=None) -> dict[str, Run]:
    """One trained target per family in ``settings.families``, same data, split and budget;
    every chapter's need of images is checked first (``miakit.chapters.feasibility``). With an
    ``executor``, the families train in parallel on its workers (``ensure_many``)."""
    from miakit.chapters.feasibility import check
    check(settings)
    names = settings.family_names()
    runs = ensure_many([(settings.for_family(name), None) for name in names], progress_bar, executor)
    return dict(zip(names, runs))


def ensure_many(targets: list[tuple[Settings, int | None]], progress_bar: bool = True, executor=None) -> list[Run]:
    """Every ``(settings, reference)`` trained or loaded (``ensure``), in order.

    ``executor`` is any ``concurrent.futures.Executor``: a local process pool, the executor of a
    dask.distributed client (``client.get_executor()``), submitit's SLURM executor. Each training
    then runs on a worker and writes its run to the store exactly as a sequential build would (the
    same key, folder and lock, so two workers never train one run); this process waits for all,
    then loads them. Only plain text crosses to a worker: the settings as JSON, the run folder
    back. The store must be reachable from every worker (a relative ``runs_dir`` is made absolute).
    The weights are bit-identical to a sequential build's when the workers use as many intra-op
    threads as it did (``torch.set_num_threads``); another count changes the order of the CPU's
    reductions, so the weights differ at rounding level (the run key is the same).
    """
    if executor is not None and targets:
        from concurrent.futures import as_completed

        futures = [submit(executor, s, r) for s, r in targets]
        for future in progress(as_completed(futures), total=len(futures), desc="trainings", unit="run",
                               enabled=progress_bar):
            future.result()  # a worker's error is raised here
    return [ensure(s, progress_bar, reference=r) for s, r in targets]


def submit(executor, settings: Settings, reference: int | None = None):
    """``ensure`` of ``settings`` (and ``reference``) started on ``executor``'s worker; returns its
    future, whose result is the run folder (``ensure_in_worker``)."""
    return executor.submit(ensure_in_worker, json.dumps(_portable(settings).flat()), reference)


def ensure_in_worker(flat_settings: str, reference: int | None = None) -> str:
    """``ensure`` in an executor's worker, from the settings' JSON (``Settings.flat``); returns the
    run folder."""
    from miakit.core.config import resolve

    values = json.loads(flat_settings)
    settings = resolve(values.pop("profile"), **values)
    return str(ensure(settings, progress_bar=False, reference=reference).dir)


def _portable(settings: Settings) -> Settings:
    """``settings`` with a relative local ``runs_dir`` made absolute, so workers in other folders
    find the same store."""
    if colab.check(settings.runs_dir) is not None:
        return settings
    return dataclasses.replace(settings, runs_dir=str(Path(settings.runs_dir).resolve()))


def samples(runs: dict[str, Run], n: int, n_steps: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` generated images from each target (cached in each run folder)."""
    return {name: run.samples(n, seed, n_steps) for name, run in runs.items()}


def _split_for(settings: Settings, n_total: int) -> data_mod.Split:
    d = settings.data
    return data_mod.make_split(d.dataset, n_total, d.n_members, d.n_nonmembers, d.val_fraction, d.split_seed)


def _ensure_split(settings: Settings, folder: Path, n_total: int, key: str) -> data_mod.Split:
    path = folder / "split.json"
    split = _split_for(settings, n_total)  # the split is a seeded draw: the stored one must be this one
    if path.exists():
        stored = data_mod.load_split(path)  # checked against its checksum
        if stored.dataset != settings.data.dataset or stored.n_total != n_total:
            raise CorruptRunError(f"{path} was made for {stored.dataset!r} with {stored.n_total} images, "
                                  f"not {settings.data.dataset!r} with {n_total}; remove {folder} to start over")
        if not stored.same_as(split):
            raise CorruptRunError(f"{path} does not hold the split these settings draw (split_seed="
                                  f"{settings.data.split_seed}): an image would change sides; remove {folder} "
                                  "to start over")
        return split
    write_json(folder / "config.json", {"run_key": key, "target_hash": settings.target_hash(), **settings.flat()})
    data_mod.save_split(split, path)
    return split


def _read_checked(path: Path, key: str, iteration: int | None) -> dict[str, torch.Tensor]:
    """The tensors of a run's weights file, checked against their checksum, the run key and the
    iteration they must hold (a snapshot copied over the final weights is refused)."""
    tensors = read_tensors(path)
    meta = read_metadata(path)
    found = meta.get("run_key")
    if found != key:
        raise CorruptRunError(f"{path} belongs to run {found!r}, not {key!r}; remove it to retrain")
    if iteration is not None and meta.get("iteration") != str(iteration):
        raise CorruptRunError(f"{path} holds the weights after iteration {meta.get('iteration')!r}, not {iteration} "
                              "(a snapshot or checkpoint copied over it?); remove it to retrain")
    return tensors


def augment(x0: torch.Tensor, target, generator: torch.Generator) -> torch.Tensor:
    """The training batch ``x0`` as the defenses' data augmentation sees it: each image mirrored
    left-right with probability 1/2 when ``random_flip``, then moved by a whole number of pixels
    in [-``random_shift``, ``random_shift``] along each axis, drawn per image, the pixels moved in
    from outside repeating the edge (as diffusion training's integer translations do). Random
    numbers come from ``generator`` only when a transform is on, so a run without either draws
    exactly what it drew before."""
    n = x0.shape[0]
    if target.random_flip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x0.device)
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    s = target.random_shift
    if s:
        shifts = torch.randint(-s, s + 1, (n, 2), generator=generator)
        padded = torch.nn.functional.pad(x0, (s, s, s, s), mode="replicate")
        h, w = x0.shape[-2:]
        out = torch.empty_like(x0)
        for dy, dx in {tuple(v) for v in shifts.tolist()}:
            rows = torch.nonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).flatten().to(x0.device)
            # image moved by (dy, dx): output pixel (i, j) is input pixel (i - dy, j - dx)
            out[rows] = padded[rows, :, s - dy:s - dy + h, s - dx:s - dx + w]
        x0 = out
    return x0


def optimizer_for(model: torch.nn.Module, target) -> torch.optim.Optimizer:
    """Adam at ``lr``, or AdamW's decoupled weight decay when ``weight_decay`` > 0 (the defense).
    Both take torch's multi-tensor (``foreach``) step on every device, the default on a GPU only: on
    this CPU it costs two thirds of the per-tensor loop's time and gives the same weights bit for bit
    (``test_train``)."""
    if target.weight_decay:
        return torch.optim.AdamW(model.parameters(), lr=target.lr, weight_decay=target.weight_decay, foreach=True)
    return torch.optim.Adam(model.parameters(), lr=target.lr, foreach=True)


class StandardStep:
    """The ordinary step: a batch of ``batch_size`` members drawn with replacement (augmented by
    ``augment``: flips, shifts), one (t, noise) draw each, Adam (AdamW with ``weight_decay``), a
    global gradient-norm clip; at the device's precision (``models.precision``), with a gradient
    scaler under fp16."""

    name = "standard"

    def __init__(self, settings: Settings, family: Family, model: torch.nn.Module, members: torch.Tensor,
                 generator: torch.Generator, device: torch.device, precision: Precision | None = None):
        self.t, self.family, self.model, self.members, self.gen, self.device = \
            settings.target, family, model, members, generator, device
        self.optimizer = optimizer_for(model, self.t)
        self.base_optimizer = self.optimizer  # what a checkpoint saves
        self.precision = precision or device_precision(device)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision.scaler else None

    def step(self) -> float:
        t, gen = self.t, self.gen
        idx = torch.randint(0, self.members.shape[0], (t.batch_size,), generator=gen)
        x0 = augment(self.members[idx.to(self.device)], t, gen)
        steps = self.family.sample_train_t(t.batch_size, gen, self.device)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        p = self.precision
        with autocast(self.device, p):
            loss = self.family.loss(self.model, x0, steps, noise).mean()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # the clip below sees the true gradients
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # skipped when a gradient overflowed
            self.scaler.update()
        return float(loss.detach())

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return {}, ({"grad_scaler": json.dumps(self.scaler.state_dict())} if self.scaler is not None else {})

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(json.loads(meta["grad_scaler"]))

    def record(self) -> dict:
        return {"precision": self.precision.name}

    def close(self) -> None:
        pass


class _DeferredInterrupt:
    """Within ``with``, a first Ctrl-C (SIGINT) only sets ``requested``; the loop finishes its
    step, writes a checkpoint and raises. A second one interrupts at once. Outside the main
    thread (where signals cannot be handled) Ctrl-C is left alone."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _make_step(settings: Settings, family: Family, model, members, generator, device):
    if settings.target.dp_sgd:
        from miakit.training.dp_sgd import DPSGDStep  # opacus is imported only for private runs

        return DPSGDStep(settings, family, model, members, generator, device)
    return StandardStep(settings, family, model, members, generator, device)


def _train(settings: Settings, key: str, folder: Path, fam: Family, model: torch.nn.Module,
           members: torch.Tensor, device: torch.device, progress_bar: bool) -> None:
    """The training loop, for every trainer; writes checkpoints, snapshots and the final run."""
    t = settings.target
    torch.manual_seed(t.train_seed)  # dropout
    gen = torch.Generator().manual_seed(t.train_seed)  # batches, flips, steps, noise of the loss
    ema_model = make_ema(model, t.ema_decay)  # before the step wraps the model: the EMA copy carries no hooks
    members = members.to(device)
    model.train()
    stepper = _make_step(settings, fam, model, members, gen, device)
    start, losses = 0, []
    if (folder / CHECKPOINT).exists():
        start, losses = _load_checkpoint(folder / CHECKPOINT, key, model, ema_model, stepper, gen)
    began = time.perf_counter()
    label = f"train {t.family}" + (f" (DP-SGD, eps={t.dp_epsilon:g})" if t.dp_sgd else "")
    bar = progress(range(start, t.iterations), total=t.iterations, initial=start, desc=label, enabled=progress_bar)

    def save(done: int) -> None:
        _save_checkpoint(folder / CHECKPOINT, key, done, model, ema_model, stepper, gen, losses)

    try:
        with _DeferredInterrupt() as interrupt:
            for iteration in bar:
                for group in stepper.optimizer.param_groups:
                    group["lr"] = t.lr * min(1.0, (iteration + 1) / max(1, t.warmup))
                loss = stepper.step()
                if loss is not None and not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the training loss became {loss} at iteration {iteration} of {folder.name} "
                        f"(lr={t.lr:g}); nothing from this step was saved. Lower the parameter lr (e.g. "
                        f"lr={t.lr / 10:g}) or raise warmup (now {t.warmup}): both are part of the run key, so a new "
                        "run starts from iteration 0 in its own folder (this run's checkpoint is not reused)")
                ema_model.update_parameters(model)
                if loss is not None:
                    losses.append(loss)
                if iteration % 50 == 0 and losses:
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
                done = iteration + 1
                if t.snapshot_every and done % t.snapshot_every == 0 and done < t.iterations:
                    snapshot(folder, key, done, ema_model)
                if interrupt.requested:
                    save(done)
                    raise KeyboardInterrupt(f"training interrupted after iteration {done}; "
                                            "a checkpoint was written and the next call resumes from it")
                if done % t.checkpoint_every == 0 and done < t.iterations:
                    save(done)
    finally:
        bar.close()
        stepper.close()
    finish(folder, key, settings, model, ema_model, losses, {
        "resumed_from": start, "train_seconds_this_session": time.perf_counter() - began,
        "n_members": int(members.shape[0]), "device": str(device), "trainer": stepper.name, **stepper.record()})


def _save_checkpoint(path: Path, key: str, iteration: int, model, ema_model, stepper,
                     gen: torch.Generator, losses: list[float]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema_model.state_dict().items()})
    for idx, state in stepper.base_optimizer.state_dict()["state"].items():
        tensors.update({f"opt.{idx}.{k}": torch.as_tensor(v) for k, v in state.items()})
    tensors["rng.batch"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["history.loss"] = torch.tensor(losses, dtype=torch.float64)
    extra, meta = stepper.state()
    tensors.update({f"step.{k}": v for k, v in extra.items()})
    write_tensors(path, tensors, {"run_key": key, "iteration": str(iteration), **{f"step.{k}": v for k, v in meta.items()}})


def _load_checkpoint(path: Path, key: str, model, ema_model, stepper, gen: torch.Generator) -> tuple[int, list[float]]:
    tensors = _read_checked(path, key, None)  # a checkpoint holds whichever iteration it was written at
    meta = read_metadata(path)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema_model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as err:
        raise CorruptRunError(f"{path} does not fit this model: {err}") from err
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, rest = name.split(".", 2)
            state.setdefault(int(idx), {})[rest] = value
    optimizer = stepper.base_optimizer
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    gen.set_state(tensors["rng.batch"])
    torch.set_rng_state(tensors["rng.torch"])
    stepper.load_state({k[5:]: v for k, v in tensors.items() if k.startswith("step.")},
                       {k[5:]: v for k, v in meta.items() if k.startswith("step.")})
    return int(meta["iteration"]), tensors["history.loss"].tolist()


def finish(folder: Path, key: str, settings: Settings, model, ema_model, losses: list[float], record: dict) -> None:
    """Write a finished run: final weights (EMA and raw) and its training record."""
    tensors = {f"ema.{k}": v for k, v in ema_model.state_dict().items()}
    tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    write_json(folder / "history.json", {"loss": losses, "iterations": settings.target.iterations,
                                         "n_parameters": n_parameters(model), **record})
    write_tensors(folder / FINAL, tensors, {"run_key": key, "iteration": str(settings.target.iterations)})
    (folder / CHECKPOINT).unlink(missing_ok=True)


def snapshot(folder: Path, key: str, iteration: int, ema_model) -> None:
    """Keep the EMA weights after ``iteration`` iterations (``Run.model_at`` reads them back)."""
    write_tensors(_snapshot_path(folder, iteration), {f"ema.{k}": v for k, v in ema_model.state_dict().items()},
                  {"run_key": key, "iteration": str(iteration)})
