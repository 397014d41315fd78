"""The paper's experiments as reusable studies: what the notebooks call, cached in the run folder.

A study scores the validation and test parts of the split separately. Attack settings (such as
the most vulnerable step) are chosen on the validation part and reported on the test part, so
the reported numbers are not tuned on the data they are measured on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

import time

from . import attacks, metrics
from .likelihood import likelihood
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
    _intervals: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_scores(cls, steps: np.ndarray, scores: dict[str, np.ndarray], criterion: str = "auc") -> "LossAttackStudy":
        """Per-step metrics of scores for every part of the split (each [n_images, n_steps])."""
        val = [metrics.evaluate_split(scores["members_val"][:, j], scores["nonmembers_val"][:, j])
               for j in range(len(steps))]
        test = [metrics.evaluate_split(scores["members_test"][:, j], scores["nonmembers_test"][:, j])
                for j in range(len(steps))]
        return cls(np.asarray(steps), scores, val, test, criterion)

    @property
    def best_index_val(self) -> int:
        """Index of the step with the best validation metric (the honest choice)."""
        return int(np.nanargmax([_criterion(r, self.criterion) for r in self.val]))

    @property
    def best_index_test(self) -> int:
        """Index of the step with the best test metric (optimistic: tuned on the reported data)."""
        return int(np.nanargmax([_criterion(r, self.criterion) for r in self.test]))

    def test_scores(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Test members' and nonmembers' scores at step ``index`` (higher = member)."""
        return self.scores["members_test"][:, index], self.scores["nonmembers_test"][:, index]

    def auc_interval(self, index: int, n_boot: int = 1000) -> tuple[float, float]:
        """95% bootstrap interval of the test AUC at step ``index`` (computed once)."""
        key = (index, n_boot)
        if key not in self._intervals:
            m, n = self.test_scores(index)
            labels = np.r_[np.ones(len(m), bool), np.zeros(len(n), bool)]
            self._intervals[key] = metrics.bootstrap_auc(np.r_[m, n], labels, n_boot)
        return self._intervals[key]

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


def loss_attack_study(run: Run, criterion: str = "auc", progress_bar: bool = True, n_steps: int | None = None,
                      n_noise: int | None = None, iteration: int | None = None) -> LossAttackStudy:
    """Run (or load from the run folder) the loss attack on every part of the split.

    ``n_steps`` and ``n_noise`` default to the run's attack settings; ``iteration`` attacks the
    EMA snapshot kept at that training iteration instead of the final model.
    """
    a = run.settings.attack
    n_steps, n_noise = n_steps or a.attack_steps, n_noise or a.n_noise
    final = iteration is None or iteration == run.settings.target.iterations
    steps = run.family.attack_steps(n_steps)
    key = stable_hash({"attack": "loss", "steps": steps.tolist(), "n_noise": n_noise, "seed": a.attack_seed,
                       **({} if final else {"iteration": iteration})})
    path = run.dir / f"loss-scores-{key}.safetensors"
    if path.exists():
        scores = read_arrays(path)
    else:
        model = run.model if final else run.model_at(iteration)
        scores = {part: attacks.loss_scores(model, run.family, run.images(getattr(run.split, part)), steps,
                                            n_noise, a.attack_seed, a.attack_batch, progress_bar)
                  for part in PARTS}
        write_arrays(path, scores)
    return LossAttackStudy.from_scores(steps, scores, criterion)


def comparison_table(results: dict[str, metrics.AttackResult]):
    """One row per labelled result: AUC, ASR and TPR@FPR in both conventions."""
    import pandas as pd

    return pd.DataFrame({label: r.row() for label, r in results.items()}).T


def loss_attack_studies(runs: dict[str, Run], criterion: str = "auc", progress_bar: bool = True) -> dict[str, LossAttackStudy]:
    return {name: loss_attack_study(run, criterion, progress_bar) for name, run in runs.items()}


def best_step_table(studies: dict[str, LossAttackStudy]):
    """Per family: the validation-chosen step and its test metrics in both conventions, with the
    optimistic best-on-test AUC beside it."""
    import pandas as pd

    rows = {}
    for name, study in studies.items():
        s = study.summary()
        rows[name] = {"step (chosen on validation)": step_label(s["best_step_val"]), **s["result_val_chosen"].row(),
                      "optimistic AUC (best on test)": s["result_test_chosen"].auc}
    return pd.DataFrame(rows).T


@dataclass
class LikelihoodStudy:
    """Likelihood-attack scores (log p, higher = member) of test members and nonmembers."""

    family: str
    logp_members: np.ndarray
    logp_nonmembers: np.ndarray
    bpd_members: np.ndarray
    bpd_nonmembers: np.ndarray
    nfe_per_image: float
    seconds_per_image: float
    result: metrics.AttackResult
    auc_interval: tuple[float, float]


def likelihood_study(run: Run, progress_bar: bool = True, config=None) -> LikelihoodStudy:
    """Run (or load) the likelihood attack on the test parts of the split, capped at
    ``lik_max_images`` images per part; ``config`` (a LikelihoodConfig) overrides the run's."""
    c, a = config or run.settings.likelihood, run.settings.attack
    members = run.split.members_test[: c.lik_max_images]
    nonmembers = run.split.nonmembers_test[: c.lik_max_images]
    key = stable_hash({"attack": "likelihood", **dataclasses.asdict(c), "seed": a.attack_seed})
    path = run.dir / f"likelihood-{key}.safetensors"
    if path.exists():
        stored = read_arrays(path)
    else:
        began = time.perf_counter()
        parts = {}
        for part, idx in (("members", members), ("nonmembers", nonmembers)):
            r = likelihood(run.model, run.family, run.images(idx), c.lik_rtol, c.lik_atol, c.lik_method,
                           a.attack_seed, c.lik_probes, batch_size=c.lik_batch, progress_bar=progress_bar)
            parts.update({f"logp_{part}": r.logp, f"bpd_{part}": r.bpd, f"nfe_{part}": r.nfe})
        parts["seconds_per_image"] = np.array([(time.perf_counter() - began) / (len(members) + len(nonmembers))])
        write_arrays(path, parts)
        stored = parts
    result = metrics.evaluate_split(stored["logp_members"], stored["logp_nonmembers"])
    scores = np.r_[stored["logp_members"], stored["logp_nonmembers"]]
    labels = np.r_[np.ones(len(stored["logp_members"]), bool), np.zeros(len(stored["logp_nonmembers"]), bool)]
    return LikelihoodStudy(
        run.family.name, stored["logp_members"], stored["logp_nonmembers"], stored["bpd_members"],
        stored["bpd_nonmembers"], float(np.mean(np.r_[stored["nfe_members"], stored["nfe_nonmembers"]])),
        float(stored["seconds_per_image"][0]), result, metrics.bootstrap_auc(scores, labels, n_boot=500))


def likelihood_studies(runs: dict[str, Run], progress_bar: bool = True) -> dict[str, LikelihoodStudy]:
    return {name: likelihood_study(run, progress_bar) for name, run in runs.items()}


def likelihood_table(studies: dict[str, LikelihoodStudy]):
    """Per family: metrics in both conventions, the AUC's bootstrap interval, bits/dim and cost."""
    import pandas as pd

    rows = {}
    for name, st in studies.items():
        rows[name] = {**st.result.row(), "AUC 95% interval": f"[{st.auc_interval[0]:.3f}, {st.auc_interval[1]:.3f}]",
                      "bits/dim members": float(np.mean(st.bpd_members)),
                      "bits/dim nonmembers": float(np.mean(st.bpd_nonmembers)),
                      "ODE evaluations per image": st.nfe_per_image, "seconds per image": st.seconds_per_image}
    return pd.DataFrame(rows).T


def chance_table(loss: dict[str, LossAttackStudy], lik: dict[str, LikelihoodStudy]):
    """Claim C1: does each attack beat chance on each family? AUC on the test split with a 95%
    bootstrap interval; an attack beats chance when the interval lies above 0.5."""
    import pandas as pd

    rows = []
    for name, study in loss.items():
        s = study.summary()
        lo, hi = study.auc_interval(study.best_index_val, n_boot=500)
        rows.append({"family": name, "attack": f"loss ({step_label(s['best_step_val'])}, chosen on validation)",
                     "AUC": s["result_val_chosen"].auc, "95% interval": f"[{lo:.3f}, {hi:.3f}]",
                     "beats chance": bool(lo > 0.5)})
    for name, st in lik.items():
        rows.append({"family": name, "attack": "likelihood", "AUC": st.result.auc,
                     "95% interval": f"[{st.auc_interval[0]:.3f}, {st.auc_interval[1]:.3f}]",
                     "beats chance": bool(st.auc_interval[0] > 0.5)})
    return pd.DataFrame(rows).set_index(["family", "attack"]).sort_index()


def at_paper_steps_by_family(studies: dict[str, LossAttackStudy], runs: dict[str, Run]) -> dict:
    """family -> {step label -> test result} at the paper's ROC steps."""
    return {name: study.at_paper_steps(runs[name].family) for name, study in studies.items()}


def headline_tables(studies: dict[str, LossAttackStudy], runs: dict[str, Run]):
    """Every family's headline table stacked, indexed by (family, row)."""
    import pandas as pd

    return pd.concat({name: study.headline_table(runs[name].family) for name, study in studies.items()})


def likelihood_results(studies: dict[str, LikelihoodStudy]) -> dict[str, metrics.AttackResult]:
    return {name: st.result for name, st in studies.items()}


def lead_family(results: dict) -> str:
    """The family the prose quotes: DDPM when present (the paper's main model), else the first."""
    return "ddpm" if "ddpm" in results else next(iter(results))
