"""A reference-model attack: the loss attack calibrated by reference models (offline LiRA with a
global variance, Carlini et al. 2022; the "difficulty calibration" of Watson et al. 2022).

An image's loss at step t says little by itself: some images are easy to denoise for every model.
Reference models trained with the target's recipe on images *outside* the evaluated split
(``miakit.training.train.ensure_references``) tell how hard each image is for a model that never saw it.
With ``r`` references the member score is

    score(x, t) = mean_{j <= r} log L_j(x, t) - log L_target(x, t),

where ``L`` is the training loss averaged over the same ``n_noise`` draws (fixed by seed and
image id) for every model: how much lower the target's loss is than an OUT model's would be.
Offline LiRA fits a Gaussian to the OUT models' (log) losses per image; with one to a few
references the per-image variance is unreliable and LiRA's global-variance form is used, whose
likelihood ratio is monotone in this difference, so its ROC is the same. The step t and the
number of references r are chosen on the validation part like every other hyperparameter.
Cost: ``r`` more trainings of the target's size, and ``n_noise * (1 + r)`` queries per image, of
which the target's ``n_noise`` are the loss attack's own: when the run's loss-attack scores at
these steps are at hand (``Context.target_log_losses``, ``miakit.attacks.scoring``) they are
read, not recomputed.
"""
from __future__ import annotations

import numpy as np

from miakit.diffusion import paper_steps
from miakit.attacks.base import Attack, register
from miakit.attacks.loss import losses


class MissingReferences(ValueError):
    """The reference-model attack was asked to score without enough reference models."""


def _scorer(model, family, x, grid, context):
    wanted = max(g["references"] for g in grid)
    if len(context.references) < wanted:
        raise MissingReferences(
            f"the reference attack's grid uses up to {wanted} reference models but {len(context.references)} were "
            "given (Context.references; miakit.training.train.ensure_references trains them)")
    n_noise = grid[0]["n_noise"]
    if any(g["n_noise"] != n_noise for g in grid):
        raise ValueError("one reference-attack call takes one n_noise")
    steps = sorted({g["t"] for g in grid})
    col = {t: i for i, t in enumerate(steps)}
    family_steps = [family.from_paper_step(t) for t in steps]

    def log_loss(net) -> np.ndarray:  # [n_images, n_steps], the same noise for every model
        return np.log(losses(net, family, x, family_steps, n_noise, context.seed, context.batch_size,
                             context.progress_bar, context.ids).mean(axis=2))

    # the target's losses are the loss attack's (the same steps, draws and noise), usually cached
    known = context.target_log_losses(steps, n_noise) if context.target_log_losses is not None else None
    target = log_loss(model) if known is None else known
    refs = np.stack([log_loss(net) for net in context.references[:wanted]])  # [r, n_images, n_steps]
    out = np.empty((x.shape[0], len(grid)))
    for j, g in enumerate(grid):
        out[:, j] = refs[:g["references"], :, col[g["t"]]].mean(axis=0) - target[:, col[g["t"]]]
    return out  # already oriented: higher = the target's loss lower than the references' = member


def _grid(settings) -> list[dict]:
    steps = paper_steps(settings.attack.attack_steps)
    return [{"t": int(t), "references": r, "n_noise": settings.attack.n_noise}
            for r in range(1, settings.attack.n_references + 1) for t in steps]


register(Attack(
    name="reference", label="reference (LiRA offline)", reference="Carlini et al. 2022; Watson et al. 2022",
    scorer=_scorer, grid=_grid, queries=lambda setting: setting["n_noise"] * (1 + setting["references"]),
    needs_references=True, default_in=("later_attacks",)))
