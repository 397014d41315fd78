"""The paper's experiments as reusable studies: what the notebooks call, cached in the run folder.

A study scores the validation and test parts of the split separately. Attack settings (such as
the most vulnerable step) are chosen on the validation part and reported on the test part, so
the reported numbers are not tuned on the data they are measured on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import attacks, metrics
from .config import stable_hash
from .diffusion import Family
from .store import read_arrays, write_arrays
from .train import Run

PARTS = ("members_val", "nonmembers_val", "members_test", "nonmembers_test")
# the steps (of 1000) at which the paper draws ROC curves
PAPER_ROC_STEPS = (0, 200, 500, 600, 800, 999)


@dataclass
class LossAttackStudy:
    """Loss-attack scores of every split part at every evaluated step, with per-step metrics."""

    steps: np.ndarray
    scores: dict[str, np.ndarray]  # part -> [n_images, n_steps], higher = member
    val: list[metrics.AttackResult]
    test: list[metrics.AttackResult]
    criterion: str = "auc"

    @property
    def best_index_val(self) -> int:
        """Index of the step with the best validation metric (the honest choice)."""
        return int(np.nanargmax([_criterion(r, self.criterion) for r in self.val]))

    @property
    def best_index_test(self) -> int:
        """Index of the step with the best test metric (optimistic: tuned on the reported data)."""
        return int(np.nanargmax([_criterion(r, self.criterion) for r in self.test]))

    def result_at(self, step: int) -> metrics.AttackResult:
        return self.test[int(np.argmin(np.abs(self.steps - step)))]

    def at_paper_steps(self, family: Family) -> dict[str, metrics.AttackResult]:
        """Test results at the evaluated steps nearest to the paper's ROC steps, labelled by step."""
        return {step_label(t): self.result_at(t) for t in roc_steps(self.steps, family)}

    def headline_table(self, family: Family):
        """Test metrics at the paper's steps, at the validation-chosen step and (optimistic) the
        best step on the test data itself, in both conventions."""
        s = self.summary()
        return comparison_table({
            **self.at_paper_steps(family),
            f"best on validation ({step_label(s['best_step_val'])})": s["result_val_chosen"],
            f"best on test, optimistic ({step_label(s['best_step_test'])})": s["result_test_chosen"],
        })

    def per_step_table(self):
        import pandas as pd

        rows = [{"step": t.item(), "val AUC": v.auc, **r.row()} for t, v, r in zip(self.steps, self.val, self.test)]
        return pd.DataFrame(rows).set_index("step")

    def summary(self) -> dict:
        """Test metrics at the validation-chosen step, and the optimistic best-on-test step."""
        bv, bt = self.best_index_val, self.best_index_test
        return {
            "best_step_val": self.steps[bv].item(), "result_val_chosen": self.test[bv],
            "best_step_test": self.steps[bt].item(), "result_test_chosen": self.test[bt],
        }


def _criterion(result: metrics.AttackResult, name: str) -> float:
    if name == "auc":
        return result.auc
    if name.startswith("tpr@"):
        return result.tpr_at_fpr[float(name[4:])]
    raise ValueError(f"unknown step-selection criterion {name!r}; use 'auc' or 'tpr@<fpr>'")


def roc_steps(evaluated: np.ndarray, family: Family, paper_steps=PAPER_ROC_STEPS) -> list:
    """The evaluated steps nearest to the paper's ROC steps, mapped into ``family``'s time."""
    wanted = [family.from_paper_step(t) for t in paper_steps]
    return sorted({evaluated[np.argmin(np.abs(evaluated - w))].item() for w in wanted})


def step_label(t) -> str:
    return f"t = {t:.3g}" if isinstance(t, float) else f"t = {t}"


def loss_attack_study(run: Run, criterion: str = "auc", progress_bar: bool = True) -> LossAttackStudy:
    """Run (or load from the run folder) the loss attack on every part of the split."""
    a = run.settings.attack
    steps = run.family.attack_steps(a.attack_steps)
    key = stable_hash({"attack": "loss", "steps": steps.tolist(), "n_noise": a.n_noise, "seed": a.attack_seed})
    path = run.dir / f"loss-scores-{key}.safetensors"
    if path.exists():
        scores = read_arrays(path)
    else:
        scores = {part: attacks.loss_scores(run.model, run.family, run.images(getattr(run.split, part)), steps,
                                            a.n_noise, a.attack_seed, a.attack_batch, progress_bar)
                  for part in PARTS}
        write_arrays(path, scores)
    val = [metrics.evaluate_split(scores["members_val"][:, j], scores["nonmembers_val"][:, j])
           for j in range(len(steps))]
    test = [metrics.evaluate_split(scores["members_test"][:, j], scores["nonmembers_test"][:, j])
            for j in range(len(steps))]
    return LossAttackStudy(steps, scores, val, test, criterion)


def comparison_table(results: dict[str, metrics.AttackResult]):
    """One row per labelled result: AUC, ASR and TPR@FPR in both conventions."""
    import pandas as pd

    return pd.DataFrame({label: r.row() for label, r in results.items()}).T
