"""The privacy-utility trade-off: targets trained with DP-SGD at several epsilon, attacked and
scored for sample quality, and claim C5 computed.

Every target of the study shares the data, split, model and training budget; only epsilon
changes (inf = ordinary training with the same budget). The loss attack runs on the factor step
grid with the step chosen on validation; the likelihood attack on the first ``dp_lik_images``
test members and nonmembers; sample quality is the Frechet distance of ``utility_samples``
generated images to the test nonmembers in a small classifier's feature space
(``miakit.utility``, not Inception FID).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from . import studies, train, utility
from .config import Settings
from .factors import N_BOOT, Verdict, tidy

N_BOOT_FD = 200


def target_settings(settings: Settings, family: str, epsilon: float) -> Settings:
    """The chapter's target for ``family`` at ``epsilon`` (inf = not private)."""
    p = settings.privacy_study
    data = dataclasses.replace(settings.data, n_members=p.dp_members)
    target = dataclasses.replace(settings.target, family=family, iterations=p.dp_iterations,
                                 batch_size=p.dp_batch_size, dp_epsilon=epsilon)
    return dataclasses.replace(settings, data=data, target=target)


@dataclass
class PrivateTarget:
    """One target of the trade-off: its attacks and its sample quality."""

    family: str
    epsilon: float
    run: train.Run
    loss: studies.LossAttackStudy
    likelihood: studies.LikelihoodStudy
    samples: torch.Tensor
    fd: float  # NaN where the dataset has no labels for the feature classifier
    fd_features: np.ndarray | None = field(repr=False)
    inception: float | None = None

    @property
    def loss_auc_interval(self) -> tuple[float, float]:
        return self.loss.auc_interval(self.loss.best_index_val, N_BOOT)

    def row(self) -> dict:
        j = self.loss.best_index_val
        dp = self.run.history.get("dp", {})
        lo, hi = self.loss_auc_interval
        return {"family": self.family, "epsilon": self.epsilon,
                "epsilon spent (accountant)": dp.get("epsilon_spent", math.inf),
                "noise multiplier": dp.get("noise_multiplier", 0.0),
                "loss AUC": self.loss.test[j].auc, "loss AUC low": lo, "loss AUC high": hi,
                "loss TPR@1%FPR": self.loss.test[j].tpr_at_fpr[0.01],
                "likelihood AUC": self.likelihood.result.auc, "likelihood AUC low": self.likelihood.auc_interval[0],
                "likelihood AUC high": self.likelihood.auc_interval[1],
                "likelihood TPR@1%FPR": self.likelihood.result.tpr_at_fpr[0.01],
                "feature FD": self.fd, "Inception FID": math.nan if self.inception is None else self.inception,
                "training seconds": self.run.history.get("train_seconds_this_session")}


@dataclass
class TradeoffStudy:
    targets: list[PrivateTarget]
    fd_floor: float  # between two halves of the real nonmembers: what a perfect generator reaches
    classifier_accuracy: float
    reference_features: np.ndarray | None = field(repr=False)
    notes: list[str] = field(default_factory=list)  # what could not be measured, and why

    def table(self):
        import pandas as pd

        return tidy(pd.DataFrame([t.row() for t in self.targets]).set_index(["family", "epsilon"]))

    def sample_grids(self, n: int = 16) -> dict[str, torch.Tensor]:
        """The first ``n`` samples of every target, labelled by family and epsilon."""
        return {f"{t.family}, " + ("not private" if math.isinf(t.epsilon) else f"eps = {t.epsilon:g}"): t.samples[:n]
                for t in self.targets}

    def verdicts(self) -> list[Verdict]:
        """C5 per family: at the smallest epsilon both attacks are near chance while the
        non-private target leaks clearly; and the smallest epsilon's samples are worse."""
        out = []
        for name in dict.fromkeys(t.family for t in self.targets):
            mine = sorted((t for t in self.targets if t.family == name), key=lambda t: t.epsilon)
            private, open_ = mine[0], mine[-1]
            if not (math.isinf(open_.epsilon) and math.isfinite(private.epsilon)):
                raise ValueError("the trade-off needs epsilon = inf and at least one finite epsilon per family")
            leaks = open_.loss_auc_interval[0] > 0.5
            near = _contains_half(private.loss_auc_interval) and _contains_half(private.likelihood.auc_interval)
            out.append(Verdict(
                f"C5 attacks ({name})", f"DP-SGD at epsilon = {private.epsilon:g} brings both attacks to chance, where "
                "the non-private target leaks clearly", leaks and near,
                f"non-private loss AUC {open_.loss.test[open_.loss.best_index_val].auc:.3f} "
                f"[{open_.loss_auc_interval[0]:.3f}, {open_.loss_auc_interval[1]:.3f}]; at epsilon {private.epsilon:g}: "
                f"loss AUC [{private.loss_auc_interval[0]:.3f}, {private.loss_auc_interval[1]:.3f}], likelihood AUC "
                f"[{private.likelihood.auc_interval[0]:.3f}, {private.likelihood.auc_interval[1]:.3f}]"))
            statement = (f"the epsilon = {private.epsilon:g} target's samples are worse than the non-private one's "
                         "(higher feature Frechet distance)")
            if self.reference_features is None:
                out.append(Verdict(f"C5 utility ({name})", statement, False, "not measured: " + "; ".join(self.notes)))
                continue
            diff, lo, hi = fd_difference(private.fd_features, open_.fd_features, self.reference_features)
            out.append(Verdict(f"C5 utility ({name})", statement, diff > 0 and lo > 0,
                               f"FD {private.fd:.2f} vs {open_.fd:.2f}: difference {diff:+.2f} [{lo:+.2f}, {hi:+.2f}]"))
        return out


def _contains_half(interval: tuple[float, float]) -> bool:
    return interval[0] <= 0.5 <= interval[1]


def fd_difference(a: np.ndarray, b: np.ndarray, reference: np.ndarray, n_boot: int = N_BOOT_FD,
                  seed: int = 0) -> tuple[float, float, float]:
    """FD(a, reference) - FD(b, reference) with a bootstrap interval over all three sets."""
    rng = np.random.default_rng(seed)
    value = utility.frechet_distance(a, reference) - utility.frechet_distance(b, reference)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        ra, rb, rr = (x[rng.integers(0, len(x), len(x))] for x in (a, b, reference))
        diffs[i] = utility.frechet_distance(ra, rr) - utility.frechet_distance(rb, rr)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(value), float(lo), float(hi)


def tradeoff_study(settings: Settings, progress_bar: bool = True) -> TradeoffStudy:
    """Train (or load) every target of the trade-off, attack it and score its samples."""
    p, f = settings.privacy_study, settings.factors
    targets, notes = [], []
    feature_reference = None  # (classifier, reference features, floor, accuracy), from the first run's split
    for name in p.families():
        for eps in p.epsilons():
            s = target_settings(settings, name, eps)
            run = train.ensure(s, progress_bar)
            if feature_reference is None:
                feature_reference = _feature_reference(run, notes)
            clf, reference, floor, accuracy = feature_reference
            loss = studies.loss_attack_study(run, progress_bar=progress_bar, n_steps=f.factor_steps,
                                             n_noise=f.factor_noise)
            lik_cfg = dataclasses.replace(s.likelihood, lik_max_images=p.dp_lik_images)
            lik = studies.likelihood_study(run, progress_bar, config=lik_cfg)
            samples = run.samples(p.utility_samples, n_steps=p.utility_steps)
            feats = clf.features(samples) if clf else None
            fd = utility.frechet_distance(feats, reference) if clf else math.nan
            inception = None
            if p.inception_fid:
                inception, note = utility.inception_fid(samples, run.images(run.split.nonmembers_test))
                if inception is None and note not in notes:
                    notes.append(note)
            targets.append(PrivateTarget(name, eps, run, loss, lik, samples, fd, feats, inception))
    return TradeoffStudy(targets, floor, accuracy, reference, notes)


def _feature_reference(run: train.Run, notes: list[str]):
    """(classifier, test-nonmember features, real-vs-real floor, accuracy), or Nones and a note
    when the dataset has no labels to train the feature classifier on."""
    try:
        clf = utility.classifier(run)
    except ValueError as err:
        notes.append(f"feature Frechet distance skipped: {err}")
        return None, None, math.nan, math.nan
    real = run.split.nonmembers_test
    reference = clf.features(run.images(real))
    half = clf.features(run.images(run.split.nonmembers_val[: len(real)]))
    return clf, reference, utility.frechet_distance(half, reference), clf.accuracy


def dp_step_timing(settings: Settings):
    """P3 on this chapter's model and batch: ``miakit.speed.dp_step_speed`` for the first DP family."""
    from . import data, diffusion, speed

    p = settings.privacy_study
    images = data.load(settings.data.dataset, settings.data.resolution).images
    x0 = images[: min(p.dp_batch_size, len(images))]
    return speed.dp_step_speed(diffusion.family(p.families()[0]), settings.target.model, x0,
                               settings.target.dp_multiplicity, settings.speed.dp_speed_rounds)
