"""Beyond the paper: every registered attack on the same targets, the same split and one
protocol (chapter 06).

Each attack scores every part of the split at every setting of its grid
(``miakit.attacks``); its setting is chosen on the validation part (AUC) and reported on the
test part with bootstrap intervals (``miakit.metrics``); the best setting on the test part is
shown beside it, labelled optimistic. The likelihood attack, which tunes nothing, is read from
chapter 03's study (the same cache); the blind baselines are the floor. Scores are cached in
the run folder under a key that covers the attack, its grid, the seed and the scored images.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import attacks, blind, metrics, studies
from .data import PARTS
from .train import Run

# version of the later attacks' scores: change it when a scorer's computation changes
FORMAT = 1
LATER = ("secmi", "pia", "pian", "sima")  # the attacks after the paper, in the order of their papers
FPRS = (0.01, 0.001)


@dataclass
class AttackOutcome:
    """One attack on one family's target: scores over its grid, chosen on validation."""

    attack: str
    family: str
    grid: list[dict]
    study: studies.LossAttackStudy  # over grid indices: selection on validation, estimates on test
    seconds_per_image: float  # wall time per image and setting-grid, on this machine

    @property
    def label(self) -> str:
        return attacks.get(self.attack).label

    @property
    def chosen_setting(self) -> dict:
        return self.grid[self.study.best_index_val]

    @property
    def optimistic_setting(self) -> dict:
        return self.grid[self.study.best_index_test]

    @property
    def queries(self):
        """Model evaluations per image at the chosen setting (None when adaptive)."""
        return attacks.get(self.attack).queries(self.chosen_setting)

    def curve(self):
        """Validation and test AUC per setting (the hyperparameter curve)."""
        import pandas as pd

        a = attacks.get(self.attack)
        return pd.DataFrame({"setting": [a.describe(g) for g in self.grid],
                             "AUC (validation)": [r.auc for r in self.study.val],
                             "AUC (test)": [r.auc for r in self.study.test], **{k: [g[k] for g in self.grid]
                                                                                 for k in self.grid[0]}})


def attack_outcome(run: Run, name: str, progress_bar: bool = True) -> AttackOutcome:
    """Run (or load) attack ``name`` on every part of ``run``'s split over its grid."""
    grid = attacks.get(name).grid(run.settings)  # attacks.score refuses a family the attack is undefined for
    a = run.settings.attack
    n_images = sum(len(getattr(run.split, part)) for part in PARTS)

    def compute() -> dict[str, np.ndarray]:
        began = time.perf_counter()
        out = {}
        for part in PARTS:
            idx = getattr(run.split, part)
            context = attacks.Context(ids=idx, seed=a.attack_seed, batch_size=a.attack_batch,
                                      progress_bar=progress_bar)
            out[part] = attacks.score(name, run.model, run.family, run.images(idx), grid, context)
        out["seconds_per_image"] = np.array([(time.perf_counter() - began) / n_images])
        return out

    stored = run.cached(f"attack-{name}", {"grid": grid, "seed": a.attack_seed, "format": FORMAT},
                        {part: getattr(run.split, part) for part in PARTS}, compute)
    scores = {part: stored[part] for part in PARTS}
    study = studies.LossAttackStudy.from_scores(np.arange(len(grid)), scores)
    return AttackOutcome(name, run.family.name, grid, study, float(stored["seconds_per_image"][0]))


@dataclass
class LaterAttacks:
    """Every attack on every family, one protocol."""

    outcomes: dict[tuple[str, str], AttackOutcome]  # (family, attack) -> outcome
    likelihood: dict[str, studies.LikelihoodStudy]
    blind: blind.BlindStudy | None

    def families(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.outcomes))

    def table(self):
        """AUC and TPR at 1% and 0.1% FPR (test part, setting chosen on validation, 95% bootstrap
        intervals), the chosen setting, the optimistic best-on-test AUC, queries and seconds per
        image; the likelihood attack (both parts of its subsets) and the blind floor beside."""
        import pandas as pd

        rows = []
        for (family, name), o in self.outcomes.items():
            a = attacks.get(name)
            est = o.study.chosen()
            rows.append({"family": family, "attack": a.label, "AUC [95%]": est.text(),
                         **{f"TPR@{100 * f:g}%FPR [95%]": o.study.chosen(f).text() for f in FPRS},
                         "chosen on validation": a.describe(o.chosen_setting),
                         "best on test (optimistic)": f"{o.study.estimate(o.study.best_index_test).value:.3f} "
                                                      f"({a.describe(o.optimistic_setting)})",
                         "queries / image": o.queries, "seconds / image (whole grid)": round(o.seconds_per_image, 4),
                         "members scored": est.n_members, "nonmembers scored": est.n_nonmembers})
        for family, st in self.likelihood.items():
            m, n = st.logp_members, st.logp_nonmembers
            rows.append({"family": family, "attack": "likelihood", "AUC [95%]": st.estimate.text(),
                         **{f"TPR@{100 * f:g}%FPR [95%]": metrics.estimate_split(m, n, statistic=f).text()
                            for f in FPRS},
                         "chosen on validation": "(nothing to choose)", "best on test (optimistic)": "-",
                         "queries / image": round(st.nfe_per_image, 1),
                         "seconds / image (whole grid)": round(st.seconds_per_image, 4),
                         "members scored": st.estimate.n_members, "nonmembers scored": st.estimate.n_nonmembers})
        if self.blind is not None:
            for name, (m, n) in self.blind.scores.items():
                est = metrics.estimate_split(m, n)
                rows.append({"family": "(no model)", "attack": f"blind: {name}", "AUC [95%]": est.text(),
                             **{f"TPR@{100 * f:g}%FPR [95%]": metrics.estimate_split(m, n, statistic=f).text()
                                for f in FPRS},
                             "chosen on validation": "(cross-fitted)", "best on test (optimistic)": "-",
                             "queries / image": 0, "seconds / image (whole grid)": "-",
                             "members scored": est.n_members, "nonmembers scored": est.n_nonmembers})
        return pd.DataFrame(rows).set_index(["family", "attack"])

    def roc_results(self) -> dict[str, dict[str, metrics.AttackResult]]:
        """family -> attack label -> test result at the validation-chosen setting (for ROC overlays)."""
        out: dict[str, dict[str, metrics.AttackResult]] = {}
        for (family, name), o in self.outcomes.items():
            out.setdefault(family, {})[o.label] = o.study.test[o.study.best_index_val]
        for family, st in self.likelihood.items():
            out.setdefault(family, {})["likelihood"] = st.result
        return out

    def curves(self):
        """One long table of every attack's validation and test AUC per setting."""
        import pandas as pd

        return pd.concat([o.curve().assign(family=family, attack=o.label)
                          for (family, _), o in self.outcomes.items()], ignore_index=True)

    def reversed_attacks(self) -> list[str]:
        """``"<family>: <attack>"`` for every attack whose test AUC at its validation-chosen
        setting has its whole 95% interval below 0.5: members score LOWER in the attack's
        published orientation (a reversed signal, not chance)."""
        return [f"{family}: {o.label}" for (family, _), o in self.outcomes.items() if o.study.chosen().high < 0.5]

    def glue_values(self) -> dict:
        """What the chapter's prose quotes: the lead family (``studies.lead_family``), the later
        attack with the highest validation-chosen test AUC on it and that AUC, the loss attack's
        AUC there, the reversed attacks (``reversed_attacks``), and every (family, attack)'s AUC
        as ``auc_<family>_<attack>``."""
        lead = studies.lead_family(dict.fromkeys(self.families()))
        later = {name: o for (family, name), o in self.outcomes.items() if family == lead and name in LATER}
        best = max(later, key=lambda name: later[name].study.chosen().value)
        reversed_ = self.reversed_attacks()
        out = {"lead_family": lead, "best_attack": later[best].label, "best_auc": later[best].study.chosen().value,
               "loss_auc": self.outcomes[(lead, "loss")].study.chosen().value,
               "reversed": ", ".join(reversed_) if reversed_ else "none", "n_reversed": len(reversed_)}
        out.update({f"auc_{family}_{name}": o.study.chosen().value for (family, name), o in self.outcomes.items()})
        return out


def later_attacks(runs: dict[str, Run], names=("loss", *LATER), progress_bar: bool = True,
                  with_likelihood: bool = True) -> LaterAttacks:
    """Every attack in ``names`` on every family's target; the likelihood attack's study and the
    blind baselines (of the first run's split, which every family shares) beside them."""
    outcomes = {}
    for family, run in runs.items():
        for name in names:
            if attacks.get(name).undefined_for(run.family) is None:
                outcomes[(family, name)] = attack_outcome(run, name, progress_bar)
    lik = studies.likelihood_studies(runs, progress_bar) if with_likelihood else {}
    first = next(iter(runs.values()))
    return LaterAttacks(outcomes, lik, blind.blind_study_of_run(first))
