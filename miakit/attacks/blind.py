"""Blind baselines: membership "attacks" that never query the target (Das et al., 2024).

If an attack that sees only the images, never the model, can tell members from nonmembers,
the split is not IID (members and nonmembers come from different sub-populations), and any
real attack's AUC mixes membership with that shift. On an IID split a blind baseline sits at
chance; that is the evidence that the split is IID, shown beside the real attacks.

Two blind attacks, both oriented higher = member:

- ``pixel statistics``: a logistic regression on model-free image statistics (intensity
  histogram, mean, spread, edge energy, a 4x4 thumbnail), fitted to tell members from
  nonmembers;
- ``nearest neighbour``: how much closer an image lies to the nearest known member than to the
  nearest known nonmember (pixel L2 distance).

Each is fitted on the validation part and scored on the test part, and the other way round
(cross-fitting): every image is scored by a model that never saw it, and the verdict rests on
all members and nonmembers of the split rather than half of them. The two halves' scores come
from different fits and are not comparable with each other, so a statistic is computed within
each half and averaged (``metrics.Arm`` with groups), never on the pooled scores: pooling
incomparable scores would pull the AUC towards 0.5, exactly the direction an "at chance" claim
must not be helped in.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from miakit.evidence import metrics

ATTACKS = ("pixel statistics", "nearest neighbour")


def features(images: torch.Tensor) -> np.ndarray:
    """Model-free statistics of images in [-1, 1] ([N, C, H, W]) -> [N, n_features]."""
    x = images.detach().float().cpu()
    flat = x.flatten(1)
    edges = torch.linspace(-1, 1, 17)
    hist = torch.stack([((flat >= lo) & (flat < hi)).float().mean(1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1, keepdim=True)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1, keepdim=True)
    side = min(4, x.shape[-1], x.shape[-2])
    thumb = F.adaptive_avg_pool2d(x, side).flatten(1)
    moments = torch.stack([flat.mean(1), flat.std(1), flat.amin(1), flat.amax(1)], 1)
    return torch.cat([hist, moments, dx, dy, thumb], 1).double().numpy()


def pixel_statistics_scores(fit_members: torch.Tensor, fit_nonmembers: torch.Tensor,
                            score: torch.Tensor, seed: int = 0) -> np.ndarray:
    """Logistic regression on ``features``, fitted on the given members and nonmembers (classes
    balanced), scoring ``score`` (decision function: higher = member)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.r_[features(fit_members), features(fit_nonmembers)]
    y = np.r_[np.ones(len(fit_members)), np.zeros(len(fit_nonmembers))]
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000,
                                                               random_state=seed))
    model.fit(x, y)
    return model.decision_function(features(score))


def nearest_neighbour_scores(fit_members: torch.Tensor, fit_nonmembers: torch.Tensor,
                             score: torch.Tensor) -> np.ndarray:
    """Distance to the nearest given nonmember minus distance to the nearest given member
    (higher = closer to the members)."""
    q = score.detach().float().flatten(1)
    d_m = torch.cdist(q, fit_members.detach().float().flatten(1)).amin(1)
    d_n = torch.cdist(q, fit_nonmembers.detach().float().flatten(1)).amin(1)
    return (d_n - d_m).double().numpy()


SCORERS = {"pixel statistics": lambda fm, fn, s: pixel_statistics_scores(fm, fn, s),
           "nearest neighbour": nearest_neighbour_scores}


@dataclass
class BlindStudy:
    """Cross-fitted blind scores of every member and nonmember of a split, per blind attack."""

    scores: dict[str, tuple[np.ndarray, np.ndarray]]  # attack -> (member scores, nonmember scores)
    # attack -> (member groups, nonmember groups): the half each image was scored in (0 = test
    # part, scored by the fit on validation; 1 = validation part); none: one group
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def arm(self, name: str) -> metrics.Arm:
        """Attack ``name``'s scores, stratified by the half they were scored in."""
        return metrics.Arm(*self.scores[name], *self.groups.get(name, (None, None)))

    def estimates(self, statistic="auc") -> dict[str, metrics.Estimate]:
        """Per attack: the statistic (AUC by default) within each half, averaged, with its
        bootstrap interval (resampled within the halves)."""
        return {name: metrics.estimate(self.arm(name), statistic) for name in self.scores}

    def results(self) -> dict[str, metrics.AttackResult]:
        """ROC results of the pooled scores, for curves only (the numbers and the IID verdict
        come from ``estimates``, within each half)."""
        return {name: metrics.evaluate_split(*pair) for name, pair in self.scores.items()}

    def glue_values(self) -> dict[str, float]:
        """``blind_auc_<attack>`` -> AUC, for the book's prose."""
        return {"blind_auc_" + name.replace(" ", "_"): e.value for name, e in self.estimates().items()}

    def table(self):
        """Per blind attack: AUC and TPR at 1% FPR with their 95% intervals (cross-fitted halves),
        and the images scored; a TPR the split cannot measure is left out (``metrics.measurable``)."""
        import pandas as pd

        rows = {}
        tprs = self.estimates(0.01)
        for name, est in self.estimates().items():
            m, n = self.scores[name]
            rows[name] = {**metrics.estimate_row(est, {0.01: tprs[name]}, counts=False),
                          "members": len(m), "nonmembers": len(n)}
        return metrics.measurable(pd.DataFrame(rows).T)


def blind_study(images, split) -> BlindStudy:
    """Both blind attacks on ``split`` of ``images`` ([N, C, H, W]), cross-fitted between the
    validation and the test part."""
    parts = {p: images[torch.as_tensor(getattr(split, p), dtype=torch.long)] for p in
             ("members_val", "nonmembers_val", "members_test", "nonmembers_test")}
    out, groups = {}, {}
    for name, scorer in SCORERS.items():
        members, nonmembers = [], []
        for fit, held in (("val", "test"), ("test", "val")):
            members.append(scorer(parts[f"members_{fit}"], parts[f"nonmembers_{fit}"], parts[f"members_{held}"]))
            nonmembers.append(scorer(parts[f"members_{fit}"], parts[f"nonmembers_{fit}"], parts[f"nonmembers_{held}"]))
        out[name] = (np.concatenate(members), np.concatenate(nonmembers))
        groups[name] = tuple(np.concatenate([np.full(len(x), g) for g, x in enumerate(part)])
                             for part in (members, nonmembers))
    return BlindStudy(out, groups)


def blind_study_of_run(run) -> BlindStudy:
    """``blind_study`` on a trained target's dataset and split (the target itself is not used)."""
    return blind_study(run.dataset.images, run.split)
