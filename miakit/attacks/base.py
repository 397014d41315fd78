"""The attack interface: one registry, one orientation, one validation.

Convention, stated once for the whole package: **members are the positive class and every score
is oriented so that higher means "more likely a member"**. An attack whose raw signal is lower
for members (a loss, an error, a norm) is negated by ``member_score_from_loss`` and nowhere else.

Each attack is one module that registers one ``Attack``: a scorer ``(model, family, images,
grid, context) -> [n_images, len(grid)]`` member scores, its hyperparameter grid for a profile,
the model evaluations ("queries") it spends per image for each setting, the families it is
defined for (with the reason where it is not), what it needs besides the target (reference
models), whether it is scored on seeded subsets rather than whole split parts (``max_images``)
and what it reports per image besides its score (``extras``). ``score`` runs any registered attack and refuses
a result of the wrong shape or with NaN or inf, naming the attack and the images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from miakit.diffusion.unet import autocast, device_of

# evaluations per forward pass when not given: the fastest size measured for the small UNet on a
# 2-core CPU (benchmarks/loss_attack.py), and a size that keeps a GPU busy
DEFAULT_BATCH = {"cpu": 128, "cuda": 1024}


class NonFiniteScore(ValueError):
    """An attack produced NaN or inf for some images (named by their ids)."""


class WrongShape(ValueError):
    """An attack returned scores whose shape is not [n_images, n_settings]."""


def require_finite(values: np.ndarray, ids, attack: str) -> np.ndarray:
    """``values`` (one row per image) unchanged, or an error naming the images whose row is not
    finite, by their ids (dataset indices), so one bad image is found rather than a whole
    evaluation failing later."""
    rows = np.asarray(values).reshape(len(values), -1)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        named = [int(np.asarray(ids)[i]) for i in bad[:10]]
        raise NonFiniteScore(f"the {attack} is NaN or inf for {len(bad)} image(s), dataset indices {named}"
                             f"{' ...' if len(bad) > 10 else ''}: check those images and the model")
    return values


def member_score_from_loss(loss: np.ndarray | torch.Tensor) -> np.ndarray:
    """Orient a loss, error or distance (lower = member) as a member score (higher = member)."""
    return -np.asarray(loss, dtype=np.float64)


@dataclass(frozen=True)
class Context:
    """What a scorer needs besides the model and the images: ``ids`` (one per image, dataset
    indices, fixing each image's random draws), a seed, evaluations per forward pass
    (``batch_size``, None = ``DEFAULT_BATCH`` of the model's device), whether to show a bar, and
    the reference models that an attack calibrating against them uses (``references``: models
    of the target's family trained without any scored image). ``target_log_losses(steps,
    n_noise)``, when given, returns the target's log mean loss on these images at those paper
    steps (the loss attack's scores, already computed and cached for the run), or None where
    they are not at hand; the reference attack then queries the target for nothing else."""

    ids: np.ndarray
    seed: int = 0
    batch_size: int | None = None
    progress_bar: bool = False
    references: tuple = ()
    target_log_losses: Callable | None = None

    def batch_for(self, model, x: torch.Tensor) -> int:
        device = device_of(model, x.device)
        return self.batch_size or DEFAULT_BATCH.get(device.type, DEFAULT_BATCH["cuda"])


@dataclass(frozen=True)
class Attack:
    """A registered attack (see the module docstring)."""

    name: str
    label: str  # how tables and figures name it
    reference: str  # the paper it comes from
    scorer: Callable  # (model, family, x, grid, context) -> np.ndarray [n_images, len(grid)]
    grid: Callable  # (settings) -> list[dict], the hyperparameter settings to search
    queries: Callable  # (setting) -> int model evaluations per image, or None when adaptive
    undefined_for: Callable = field(default=lambda family: None)  # (family) -> reason it is not defined, or None
    # calibrates against reference models (Context.references; settings.attack.n_references of them,
    # trained by miakit.training.train.ensure_references without any scored image)
    needs_references: bool = False
    # (settings) -> at most this many members and as many nonmembers, or None for whole split parts:
    # an attack too costly for whole parts that chooses nothing (one setting, so no validation part)
    # is scored on seeded random subsets of the members and the nonmembers, validation and test
    # together (``Split.subset``; the likelihood attack). ``scoring.score_split`` does both.
    max_images: Callable | None = None
    # names of per-image quantities the scorer returns beside the scores (the likelihood attack's
    # bits/dim and ODE evaluations): its scorer then returns (scores, {name: [n_images]})
    extras: tuple[str, ...] = ()
    # one of the paper's own attacks (Hu & Pang 2023), not a later one: the L1 claims judge the later ones
    paper: bool = False
    # where the attack runs when nobody names the attacks (``PLACES``): chapter 06's comparison on the
    # book's own targets, the DP chapter (and its C5 claims), the own-model API (``defaults``)
    default_in: tuple[str, ...] = ()
    # (family) -> whose statistic this is on that family: the authors' own form, or our mapping of it
    form: Callable = field(default=lambda family: "as its authors define it")

    def describe(self, setting: dict) -> str:
        """A short label of one setting, for tables and curves."""
        return ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in setting.items()) or "-"


REGISTRY: dict[str, Attack] = {}

# the places an attack can be a default of (``Attack.default_in``)
PLACES = {"later_attacks": "chapter 06's comparison on the book's own targets",
          "dp": "the DP chapter's attacks (dp_attacks = 'default')",
          "own": "miakit.own.attack's attacks when none are named"}


def discrete_form(continuous_name: str) -> Callable:
    """The ``form`` of an attack its authors wrote for DDPM (PIA, PIAN, SecMI): theirs on DDPM,
    our mapping of their DDPM formula on the other families (the authors' continuous-time form
    is registered as ``continuous_name`` for the SDE families)."""
    def form(family) -> str:
        if family.name == "ddpm":
            return "the authors' (their DDPM code)"
        if family.discrete:
            return "their DDPM formula mapped to this family (ours: the authors have no code for it)"
        return f"their DDPM formula mapped to this family (ours; the authors' continuous-time form is {continuous_name})"
    return form


def register(attack: Attack) -> Attack:
    """Add ``attack`` to the registry (its name must be new, its ``default_in`` places known)."""
    if attack.name in REGISTRY:
        raise ValueError(f"an attack called {attack.name!r} is already registered")
    unknown = set(attack.default_in) - set(PLACES)
    if unknown:
        raise ValueError(f"attack {attack.name!r}: unknown default_in place(s) {sorted(unknown)}; "
                         f"choose from {sorted(PLACES)}")
    if attack.max_images is not None and "later_attacks" in attack.default_in:
        raise ValueError(f"attack {attack.name!r} is scored on subsets of the members and nonmembers (max_images): "
                         "chapter 06 chooses each later attack's setting on the validation part, so it cannot be "
                         "a later_attacks default")
    REGISTRY[attack.name] = attack
    return attack


def defaults(place: str) -> list[str]:
    """The registered attacks that run at ``place`` (``PLACES``) when none are named, in
    registration order."""
    if place not in PLACES:
        raise ValueError(f"unknown place {place!r}; choose from {sorted(PLACES)}")
    return [name for name, a in REGISTRY.items() if place in a.default_in]


def later() -> list[str]:
    """The registered attacks that came after the paper (the L1 claims judge them)."""
    return [name for name, a in REGISTRY.items() if not a.paper]


def get(name: str) -> Attack:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; registered: {sorted(REGISTRY)}") from None


def score(name: str, model, family, x: torch.Tensor, grid: list[dict], context: Context, extras: bool = False):
    """Member scores [n_images, len(grid)] of attack ``name`` (higher = member), checked: the
    shape must be right and every value finite, or a clear error names the attack (and the
    images). With ``extras``: (scores, {name: [n_images]}) with every quantity of
    ``Attack.extras``, checked the same way (an attack without extras gives an empty dict)."""
    attack = get(name)
    reason = attack.undefined_for(family)
    if reason:
        raise ValueError(f"the {attack.label} attack is not defined for {family.name}: {reason}")
    if len(context.ids) != x.shape[0]:
        raise ValueError(f"{len(context.ids)} ids for {x.shape[0]} images")
    out = attack.scorer(model, family, x, grid, context)
    side = {}
    if attack.extras:
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise WrongShape(f"the {attack.label} attack declares extras {attack.extras}: its scorer must return "
                             "(scores, {name: per-image values})")
        out, side = out
        if set(side) != set(attack.extras):
            raise WrongShape(f"the {attack.label} attack returned extras {sorted(side)}; it declares "
                             f"{sorted(attack.extras)}")
    values = np.asarray(out, dtype=np.float64)
    if values.shape != (x.shape[0], len(grid)):
        raise WrongShape(f"the {attack.label} attack returned scores of shape {values.shape}; "
                         f"expected [n_images, n_settings] = {(x.shape[0], len(grid))}")
    require_finite(values, context.ids, f"{attack.label} attack")
    checked = {}
    for key in attack.extras:
        v = np.asarray(side[key], dtype=np.float64)
        if v.shape != (x.shape[0],):
            raise WrongShape(f"the {attack.label} attack's {key} has shape {v.shape}; expected [n_images] = "
                             f"{(x.shape[0],)}")
        checked[key] = require_finite(v, context.ids, f"{attack.label} attack's {key}")
    return (values, checked) if extras else values


def family_steps(family, paper_steps) -> torch.Tensor:
    """The family's own step values for steps in the paper's 1000-step units, as a tensor of
    the family's step type (integer indices, or float times)."""
    values = [family.from_paper_step(int(s)) for s in np.atleast_1d(paper_steps)]
    return torch.tensor(values, dtype=torch.long if family.discrete else torch.float64)


def over_steps(x: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image at every step as one batch, step-major: images [n * len(steps), ...] and
    steps [n * len(steps)]; reshape results to [len(steps), n, ...]."""
    return x.repeat(len(steps), *[1] * (x.dim() - 1)), steps.repeat_interleave(x.shape[0])


@torch.inference_mode()
def batched(fn, model, tensors: list[torch.Tensor], batch_size: int, bar=None) -> torch.Tensor:
    """``fn(*chunks)`` over ``tensors`` (all with the same first dimension) in chunks of
    ``batch_size`` rows on the model's device, under the device's autocast; float32 on the CPU."""
    device = device_of(model, tensors[0].device)
    out = []
    n = tensors[0].shape[0]
    for b in range(0, n, batch_size):
        chunk = [t[b:b + batch_size].to(device) for t in tensors]
        with autocast(device):
            out.append(fn(*chunk).float().cpu())
        if bar is not None:
            bar.update(chunk[0].shape[0])
    return torch.cat(out) if out else torch.empty(0)
