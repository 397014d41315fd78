"""Where a registered attack meets a run: every part of the run's split scored over the attack's
grid, cached in the run folder.

Every chapter that scores a split over a grid (the loss attack's steps in chapters 02 and 04, the
DP targets in chapter 05, every attack in chapter 06) comes through ``score_split``, so the same
attack, grid, seed, model and images are computed once and read back everywhere. The cache key
covers the attack, its grid, the seed, the model (the final one, or the EMA snapshot of a
training iteration), the reference models an attack calibrates against, the content of the
scored images (``Run.cached``) and ``FORMAT``. The scores are also exported per image beside the
run as CSV (``miakit.evidence.export``), whether computed or loaded.

An attack that declares ``max_images`` (the likelihood attack: one fixed setting, an ODE solve per
image) comes through the same path: it is scored on the union parts ``members`` and
``nonmembers`` (validation and test together), each a seeded random subset of at most
``max_images`` images (``Split.subset``), and its per-image ``extras`` are cached and exported
beside its scores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from miakit import attacks
from miakit.evidence import export
from miakit.training import train
from miakit.core.data import PARTS, UNIONS
from miakit.training.train import Run

# version of the cached scores: change it when a scorer's computation changes
FORMAT = 1


@dataclass(frozen=True)
class Scored:
    """One attack's scores of a run's split: ``scores[part]`` is [n_images, len(grid)], higher =
    member, for the dataset indices ``indices[part]``; ``extras[name][part]`` the attack's other
    per-image quantities (``Attack.extras``); ``seconds_per_image`` is the wall time per image of
    the whole grid on the machine that computed it; ``references`` are the reference models' runs
    it used."""

    name: str
    grid: list[dict]
    scores: dict[str, np.ndarray]
    seconds_per_image: float
    references: tuple = ()
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def score_split(run: Run, name: str, settings=None, progress_bar: bool = True, references=None,
                iteration: int | None = None, parts: tuple[str, ...] | None = None, grid: list[dict] | None = None,
                max_images: int | None = None) -> Scored:
    """Run (or load) attack ``name`` on every part of ``run``'s split over its grid (the grid of
    ``settings``, by default the run's own). An attack that calibrates against reference models
    (``Attack.needs_references``) gets the run's (``train.ensure_references``, trained here when
    missing) unless ``references`` are given. ``iteration`` attacks the EMA snapshot kept at that
    training iteration instead of the final model. ``parts`` scores only those parts of the split
    and ``grid`` those settings (the benchmark regime scores its grid on the validation part and
    one chosen setting on the test part); both are in the cache key.

    An attack with ``Attack.max_images`` is scored by default on ``members`` and ``nonmembers``,
    each a seeded random subset of at most ``max_images`` images (by default the attack's own
    cap under ``settings``); its grid must hold one setting (it chooses nothing on data). The
    scored images' content is in the cache key, so a different cap that draws other images is
    computed anew."""
    attack = attacks.get(name)
    settings = settings or run.settings
    subsets = attack.max_images is not None
    if parts is None:
        parts = UNIONS if subsets else PARTS
    parts = tuple(parts)
    unknown = [p for p in parts if p not in PARTS + UNIONS]
    if unknown or not parts or len(set(parts)) != len(parts):
        raise ValueError(f"parts must be a non-empty selection of {PARTS + UNIONS} without repeats, got {parts}")
    if set(parts) & set(UNIONS) and set(parts) & set(PARTS):
        raise ValueError(f"parts {parts} mix a union of two parts with one of them: an image would be scored twice")
    grid = list(grid) if grid is not None else attack.grid(settings)  # attacks.score refuses an undefined family
    if not grid:
        raise ValueError(f"the {attack.label} attack has no setting to try under these settings")
    if subsets and len(grid) != 1:
        raise ValueError(f"the {attack.label} attack is scored on subsets (it chooses nothing on data): its grid must "
                         f"hold one setting, not {len(grid)}")
    if max_images is None and subsets:
        max_images = attack.max_images(settings)
    if references is None:
        references = train.ensure_references(run.settings, progress_bar) if attack.needs_references else []
    references = tuple(references)
    if run.released is not None:  # a released snapshot (``Run.at``): scored as that iteration of the run
        if iteration not in (None, run.released):
            raise ValueError(f"iteration {iteration} asked of the model released at iteration {run.released}")
        iteration = run.released
    final = iteration is None or iteration == run.settings.target.iterations
    a = run.settings.attack
    images = {part: run.split.subset(part, max_images) for part in parts}
    n_images = sum(len(idx) for idx in images.values())

    def compute() -> dict[str, np.ndarray]:
        began = time.perf_counter()
        model = run.model if final else run.model_at(iteration)
        context_models = tuple(r.model for r in references)
        out = {}
        target_losses = _target_log_losses(run, settings, iteration, progress_bar) if attack.needs_references else None
        for part, idx in images.items():
            context = attacks.Context(ids=idx, seed=a.attack_seed, batch_size=a.attack_batch,
                                      progress_bar=progress_bar, references=context_models,
                                      target_log_losses=target_losses(part, idx) if target_losses else None)
            out[part], side = attacks.score(name, model, run.family, run.images(idx), grid, context, extras=True)
            out.update({f"{part}.{key}": v for key, v in side.items()})
        out["seconds_per_image"] = np.array([(time.perf_counter() - began) / n_images])
        return out

    payload = {"grid": grid, "seed": a.attack_seed, "format": FORMAT}
    if references:
        payload["references"] = [r.key for r in references]
        payload["reference_weights"] = [r.weights_checksum() for r in references]  # reused only with these
    if not final:
        payload["iteration"] = iteration
    if parts != PARTS:  # the whole split keeps its old key (and its cache)
        payload["parts"] = list(parts)
    stored = run.cached(f"attack-{name}", payload, images, compute)
    scores = {part: stored[part] for part in parts}
    extras = {key: {part: stored[f"{part}.{key}"] for part in parts} for key in attack.extras}
    # per-image scores beside the run as CSV, for the reader's own analysis (miakit.evidence.export)
    export.export_scored(run, name, f"attack-{name}", payload, images, grid, scores, seed=a.attack_seed,
                         iteration=iteration, references=references, extras=extras)
    return Scored(name, grid, scores, float(stored["seconds_per_image"][0]), references, images, extras)


def _target_log_losses(run: Run, settings, iteration: int | None, progress_bar: bool):
    """For an attack that calibrates the target's loss (the reference attack): ``for_part(part,
    idx)`` gives a function of (paper steps, n_noise) that returns the target's log mean loss on
    the images ``idx`` of ``part`` from the loss attack's scores of the run (read from the cache,
    or computed and cached once for every chapter; loaded once for all parts), or None where the
    loss attack's grid lacks a step or its draws, or scored other images. The loss attack's score
    is minus that mean loss, with the same seed, noise and images, so nothing changes but the
    queries saved."""
    loaded = []

    def loss_scores() -> Scored:
        if not loaded:
            loaded.append(score_split(run, "loss", settings, progress_bar, iteration=iteration))
        return loaded[0]

    def for_part(part: str, idx: np.ndarray):
        def lookup(steps, n_noise: int):
            loss = loss_scores()
            column = {(g["t"], g["n_noise"]): j for j, g in enumerate(loss.grid)}
            if part not in loss.scores or not np.array_equal(loss.indices[part], idx) \
                    or any((t, n_noise) not in column for t in steps):
                return None
            return np.log(-loss.scores[part][:, [column[(t, n_noise)] for t in steps]])
        return lookup
    return for_part
