"""The paper's experiments as reusable studies: what the notebooks call, cached in the run folder.

A study scores the validation and test parts of the split separately. Attack settings (such as
the most vulnerable step) are chosen on the validation part and reported on the test part, so
the reported numbers are not tuned on the data they are measured on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from miakit.evidence import claims, metrics, speed
from miakit.attacks import blind, log_likelihood, scoring
from miakit.chapters.contract import Chapter, ChapterResult
from miakit.diffusion import Family
from miakit.training import train
from miakit.training.train import Run
# the steps (of 1000) at which the paper draws ROC curves: the paper code's step labels, which for
# SMLD count from the largest noise (``Family.paper_label``), so ``roc_steps`` mirrors them there
PAPER_ROC_STEPS = (0, 200, 500, 600, 800, 999)


@dataclass
class LossAttackStudy:
    """Loss-attack scores of every split part at every evaluated step, with per-step metrics."""

    steps: np.ndarray
    scores: dict[str, np.ndarray]  # part -> [n_images, n_steps], higher = member
    val: list[metrics.AttackResult]
    test: list[metrics.AttackResult]
    criterion: str = "auc"
    family: Family | None = None  # the family whose steps ``steps`` are (labels show its paper labels)
    _estimates: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_scores(cls, steps: np.ndarray, scores: dict[str, np.ndarray], criterion: str = "auc",
                    family: Family | None = None) -> "LossAttackStudy":
        """Per-step metrics of scores for every part of the split (each [n_images, n_steps]);
        ``family``, when the steps are a family's own, lets labels show the paper's label too."""
        val = [metrics.evaluate_split(scores["members_val"][:, j], scores["nonmembers_val"][:, j])
               for j in range(len(steps))]
        test = [metrics.evaluate_split(scores["members_test"][:, j], scores["nonmembers_test"][:, j])
                for j in range(len(steps))]
        return cls(np.asarray(steps), scores, val, test, criterion, family)

    def label(self, step) -> str:
        """``step_label`` of one of this study's steps (with the paper's label where it differs)."""
        return step_label(step, self.family)

    @property
    def best_index_val(self) -> int:
        """Index of the step with the best validation metric (the honest choice)."""
        return int(np.nanargmax([_criterion(r, self.criterion) for r in self.val]))

    @property
    def best_interior_index_val(self) -> int:
        """Index of the step, other than the first and the last, with the best validation metric."""
        if len(self.steps) < 3:
            raise ValueError("an interior step needs at least 3 evaluated steps")
        return 1 + int(np.nanargmax([_criterion(r, self.criterion) for r in self.val[1:-1]]))

    @property
    def best_index_test(self) -> int:
        """Index of the step with the best test metric (optimistic: tuned on the reported data)."""
        return int(np.nanargmax([_criterion(r, self.criterion) for r in self.test]))

    def test_scores(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Test members' and nonmembers' scores at step ``index`` (higher = member)."""
        return self.scores["members_test"][:, index], self.scores["nonmembers_test"][:, index]

    def cross_fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Scores of every member and nonmember, each at a step chosen without it: the test part
        at the step chosen on the validation part and the validation part at the step chosen on
        the test part (cross-fitting). Returns (members, nonmembers, member groups, nonmember
        groups); the groups (0 = test part, 1 = validation part) keep the halves apart, since
        their scores come from different steps and are not comparable with each other."""
        jv, jt = self.best_index_val, self.best_index_test
        m = np.r_[self.scores["members_test"][:, jv], self.scores["members_val"][:, jt]]
        n = np.r_[self.scores["nonmembers_test"][:, jv], self.scores["nonmembers_val"][:, jt]]
        gm = np.r_[np.zeros(len(self.scores["members_test"]), int), np.ones(len(self.scores["members_val"]), int)]
        gn = np.r_[np.zeros(len(self.scores["nonmembers_test"]), int), np.ones(len(self.scores["nonmembers_val"]), int)]
        return m, n, gm, gn

    def estimate(self, index: int, statistic="auc") -> metrics.Estimate:
        """The test AUC (or TPR at a float FPR) at step ``index`` with its 95% bootstrap
        interval (computed once)."""
        key = (index, statistic)
        if key not in self._estimates:
            self._estimates[key] = metrics.estimate_split(*self.test_scores(index), statistic=statistic)
        return self._estimates[key]

    def chosen(self, statistic="auc") -> metrics.Estimate:
        """``estimate`` at the step chosen on validation data."""
        return self.estimate(self.best_index_val, statistic)

    def result_at(self, step: int) -> metrics.AttackResult:
        return self.test[int(np.argmin(np.abs(self.steps - step)))]

    def at_paper_steps(self, family: Family | None = None) -> dict[str, metrics.AttackResult]:
        """Test results at the evaluated steps nearest to the paper's ROC steps (``roc_steps``:
        mirrored for SMLD), in the order of the paper's labels, labelled by ``step_label`` (our
        step, and for SMLD the paper's label beside it)."""
        family = family or self.family
        return {step_label(t, family): self.result_at(t) for t in roc_steps(self.steps, family)}

    def headline_table(self, family: Family | None = None):
        """Test metrics at the paper's steps, at the validation-chosen step and (optimistic) the
        best step on the test data itself, in both conventions."""
        family = family or self.family
        s = self.summary()
        return comparison_table({
            **self.at_paper_steps(family),
            f"best on validation: {step_label(s['best_step_val'], family)}": s["result_val_chosen"],
            f"best on test, optimistic: {step_label(s['best_step_test'], family)}": s["result_test_chosen"],
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
    """The evaluated steps (``family``'s own) nearest to the paper's ROC steps, in the order of
    the paper's labels. ``paper_steps`` are the paper code's labels of its 1000-step processes:
    each is scaled to the family's process (``from_paper_step``) and turned into our step by
    ``Family.paper_label`` (its own inverse), so for SMLD, whose paper labels count from sigma_max,
    label 0 picks our last step and label 999 our step 0; elsewhere the label is the step."""
    wanted = [family.paper_label(family.from_paper_step(t)) for t in paper_steps]
    picked = {evaluated[np.argmin(np.abs(evaluated - w))].item() for w in wanted}
    return sorted(picked, key=lambda s: (family.paper_label(s), s))


def _labels_differ(family: Family | None) -> bool:
    """Whether the paper's code labels ``family``'s steps otherwise than we do (SMLD)."""
    return family is not None and family.paper_label(0) != 0


def step_label(t, family: Family | None = None) -> str:
    """``t = <step>`` in the family's own steps (0 = least noise, every family). For a family the
    paper's code labels the other way round (SMLD), the paper's label follows, so no SMLD row
    is ambiguous: ``t = 50 (paper's SMLD label 949)``."""
    text = f"t = {t:.3g}" if isinstance(t, float) else f"t = {t}"
    if _labels_differ(family):
        text += f" (paper's {family.name.upper()} label {family.paper_label(t)})"
    return text


def loss_attack_study(run: Run, criterion: str = "auc", progress_bar: bool = True, n_steps: int | None = None,
                      n_noise: int | None = None, iteration: int | None = None) -> LossAttackStudy:
    """Run (or load from the run folder) the loss attack on every part of the split
    (``scoring.score_split``, the cache that chapter 06 reads too).

    ``n_steps`` and ``n_noise`` default to the run's attack settings; ``iteration`` attacks the
    EMA snapshot kept at that training iteration instead of the final model.
    """
    a = run.settings.attack
    grid_settings = dataclasses.replace(run.settings, attack=dataclasses.replace(
        a, attack_steps=n_steps or a.attack_steps, n_noise=n_noise or a.n_noise))
    scored = scoring.score_split(run, "loss", grid_settings, progress_bar, iteration=iteration)
    steps = run.family.attack_steps(grid_settings.attack.attack_steps)  # the grid's steps in the family's units
    return LossAttackStudy.from_scores(steps, scored.scores, criterion, run.family)


def chosen_results(studies: dict[str, LossAttackStudy]) -> dict[str, metrics.AttackResult]:
    """family -> test result of the loss attack at its validation-chosen step (for ROC overlays)."""
    return {f"loss attack, {name}: {st.label(st.steps[st.best_index_val].item())}": st.test[st.best_index_val]
            for name, st in studies.items()}


def comparison_table(results: dict[str, metrics.AttackResult]):
    """One row per labelled result: AUC, ASR and TPR@FPR in both conventions."""
    import pandas as pd

    return metrics.measurable(pd.DataFrame({label: r.row() for label, r in results.items()}).T)


def loss_attack_studies(runs: dict[str, Run], criterion: str = "auc", progress_bar: bool = True) -> dict[str, LossAttackStudy]:
    return {name: loss_attack_study(run, criterion, progress_bar) for name, run in runs.items()}


def families_as_columns(rows: dict[str, dict]):
    """A per-family table with a column per family and its quantities as rows (a few families and
    many quantities fit the text column that way), numbers rounded to 4 digits, quantities no
    family can measure left out (``metrics.measurable``, named in ``attrs["unmeasurable"]``)."""
    import pandas as pd

    table = metrics.measurable(pd.DataFrame(rows).T.infer_objects().round(4))
    out = table.T.astype(object)
    out.attrs = table.attrs
    return out


def best_step_table(studies: dict[str, LossAttackStudy]):
    """Per family (a column each, the quantities as rows, so that they fit the text column): the
    validation-chosen step and its test metrics in both conventions (AUC and TPR at 1% FPR with
    95% intervals), with the optimistic best-on-test AUC beside it."""
    rows = {}
    for name, study in studies.items():
        s = study.summary()
        row = s["result_val_chosen"].row()
        rows[name] = {"step (chosen on validation)": study.label(s["best_step_val"]),
                      **metrics.estimate_row(study.chosen(), {0.01: study.chosen(0.01)}, counts=False),
                      **{k: v for k, v in row.items() if k not in ("AUC", "TPR@1%FPR")},
                      "optimistic AUC (best on test)": s["result_test_chosen"].auc}
    return families_as_columns(rows)


@dataclass
class LikelihoodStudy:
    """Likelihood-attack scores (log p, higher = member) of test members and nonmembers."""

    family: str
    member_indices: np.ndarray  # dataset indices of the scored members (a seeded random subset)
    nonmember_indices: np.ndarray
    logp_members: np.ndarray
    logp_nonmembers: np.ndarray
    bpd_members: np.ndarray
    bpd_nonmembers: np.ndarray
    nfe_per_image: float
    seconds_per_image: float
    result: metrics.AttackResult
    estimate: metrics.Estimate  # AUC with its 95% bootstrap interval
    tpr_estimate: metrics.Estimate  # TPR at 1% FPR with its interval (NaN when unresolvable)

    @property
    def auc_interval(self) -> tuple[float, float]:
        return self.estimate.low, self.estimate.high


def likelihood_study(run: Run, progress_bar: bool = True, config=None) -> LikelihoodStudy:
    """Run (or load) the likelihood attack through the one scoring path
    (``scoring.score_split``): at most ``lik_max_images`` members and at most as many
    nonmembers, each a seeded random subset (``Split.subset``) of the validation and test parts
    together. The attack chooses nothing on data (its solver settings are fixed beforehand), so
    it needs no validation part and scores both. ``config`` (a LikelihoodConfig) overrides the
    run's."""
    c = config or run.settings.likelihood
    scored = scoring.score_split(run, "likelihood", progress_bar=progress_bar, grid=[log_likelihood.setting_of(c)],
                                 max_images=c.lik_max_images)
    m, n = scored.scores["members"][:, 0], scored.scores["nonmembers"][:, 0]
    bpd, nfe = scored.extras["bpd"], scored.extras["nfe"]
    return LikelihoodStudy(
        run.family.name, scored.indices["members"], scored.indices["nonmembers"], m, n,
        bpd["members"], bpd["nonmembers"], float(np.mean(np.r_[nfe["members"], nfe["nonmembers"]])),
        scored.seconds_per_image, metrics.evaluate_split(m, n), metrics.estimate_split(m, n),
        metrics.estimate_split(m, n, statistic=0.01))


def likelihood_studies(runs: dict[str, Run], progress_bar: bool = True) -> dict[str, LikelihoodStudy]:
    return {name: likelihood_study(run, progress_bar) for name, run in runs.items()}


def likelihood_table(studies: dict[str, LikelihoodStudy]):
    """Per family (a column each, so that the many quantities fit the text column as rows):
    metrics in both conventions, AUC and TPR@1%FPR intervals, bits/dim and cost."""

    rows = {}
    for name, st in studies.items():
        row = st.result.row()
        rows[name] = {**metrics.estimate_row(st.estimate, {0.01: st.tpr_estimate}, counts=False),
                      **{k: v for k, v in row.items() if k not in ("AUC", "TPR@1%FPR")},
                      "members scored": len(st.logp_members), "nonmembers scored": len(st.logp_nonmembers),
                      "bits/dim members": float(np.mean(st.bpd_members)),
                      "bits/dim nonmembers": float(np.mean(st.bpd_nonmembers)),
                      "ODE evaluations per image": st.nfe_per_image, "seconds per image": st.seconds_per_image}
    return families_as_columns(rows)


def members_lower_bpd(studies: dict[str, LikelihoodStudy]) -> int:
    """On how many families the test members' mean bits/dim lies below the nonmembers'."""
    return int(sum(np.mean(st.bpd_members) < np.mean(st.bpd_nonmembers) for st in studies.values()))


C1_STATEMENT = f"the attack beats chance ({claims.BEATS_CHANCE_TEXT}) on this family"


def c1_verdicts(loss: dict[str, LossAttackStudy], lik: dict[str, LikelihoodStudy],
                figure: str = "notebooks/03_likelihood_attack#c1") -> list[claims.Verdict]:
    """Claim C1 per family and attack: the test AUC (loss attack at the step chosen on
    validation) beats chance by the rule ``claims.beats_chance``: its whole interval lies above
    the chance band, above 0.5 + ``claims.DELTA`` (``C1_STATEMENT`` says the same threshold)."""
    out = []
    for name in loss:
        st = loss[name]
        label = f"loss AUC ({step_label(st.steps[st.best_index_val].item())})"
        out.append(claims.Verdict(f"C1 loss ({name})", C1_STATEMENT, (claims.beats_chance(label, st.chosen()),),
                                  figure))
    for name in lik:
        out.append(claims.Verdict(f"C1 likelihood ({name})", C1_STATEMENT,
                                  (claims.beats_chance("likelihood AUC", lik[name].estimate),), figure))
    return out


def attack_table(loss: dict[str, LossAttackStudy], lik: dict[str, LikelihoodStudy], blind=None):
    """Every attack on every family (and the blind baselines, which see no model): AUC and TPR
    at 1% FPR with 95% bootstrap intervals, and the images they rest on (the loss attack: the
    test part at the step chosen on validation; the likelihood attack, which tunes nothing:
    members and nonmembers of both parts; the blind baselines: both parts, cross-fitted)."""
    import pandas as pd

    rows = []

    def add(family, attack, auc: metrics.Estimate, tpr: metrics.Estimate):
        rows.append({"family": family, "attack": attack, **metrics.estimate_row(auc, {0.01: tpr})})

    for name, st in loss.items():
        add(name, f"loss, chosen on validation: {st.label(st.steps[st.best_index_val].item())}", st.chosen(),
            st.chosen(0.01))
    for name, st in lik.items():
        add(name, "likelihood", st.estimate, st.tpr_estimate)
    if blind is not None:
        aucs, tprs = blind.estimates(), blind.estimates(0.01)  # averaged within the cross-fitted halves
        for attack in blind.scores:
            add("(no model)", f"blind: {attack}", aucs[attack], tprs[attack])
    return pd.DataFrame(rows).set_index(["family", "attack"])


def at_paper_steps_by_family(studies: dict[str, LossAttackStudy], runs: dict[str, Run]) -> dict:
    """family -> {step label -> test result} at the paper's ROC steps."""
    return {name: study.at_paper_steps(runs[name].family) for name, study in studies.items()}


def headline_tables(studies: dict[str, LossAttackStudy], runs: dict[str, Run]):
    """Every family's headline table stacked, indexed by (family, row)."""
    import pandas as pd

    return metrics.measurable(pd.concat({name: study.headline_table(runs[name].family) for name, study in studies.items()}))


def likelihood_results(studies: dict[str, LikelihoodStudy]) -> dict[str, metrics.AttackResult]:
    return {name: st.result for name, st in studies.items()}


def lead_family(results: dict) -> str:
    """The family the prose quotes: DDPM when present (the paper's main model), else the first."""
    return "ddpm" if "ddpm" in results else next(iter(results))


IID_STATEMENT = (f"(ours) the split is IID: attacks that never query the model (blind baselines) are at chance "
                 f"({claims.AT_CHANCE_TEXT}), so the attacks below measure membership, not a difference between "
                 f"the member and nonmember images")


def iid_verdict(study: blind.BlindStudy, figure: str = "notebooks/02_loss_attack#blind") -> claims.Verdict:
    """The split check: every blind baseline at chance (``claims.within``), each on the whole
    split (cross-fitted between its halves, the AUC computed within each half and averaged:
    ``BlindStudy.estimates``), decided at margin ``claims.DELTA`` and shown at ``claims.MARGINS``.

    Simulated at the cpu profile's sizes (100 members and 1000 nonmembers, two halves of 50 +
    500; member and nonmember scores from one distribution, i.e. a truly IID split; 1000
    bootstrap resamples): one blind baseline comes out REPRODUCED in 82% of 900 simulated
    splits at margin 0.1 (``claims.chance_power``: 0.82) and in none at margin 0.05; both
    baselines together in 69% when their scores are independent (more when they are
    correlated, as two attacks on the same images are)."""
    return claims.Verdict("IID split", IID_STATEMENT,
                          tuple(claims.within(f"blind {name} AUC", e, grows=claims.EVERY_MEMBER_SCORED)
                                for name, e in study.estimates().items()), figure)


@dataclass
class LossChapter(ChapterResult):
    """Chapter 02: the loss attack on every family's target, and the blind baselines beside it."""

    number = "02"

    settings: object
    runs: dict[str, Run]
    loss: dict[str, LossAttackStudy]
    lead: str
    blind: blind.BlindStudy

    def metrics_figure(self):
        from miakit.book import plots

        return plots.metrics_vs_step_by_family(self.loss, self.runs)

    def paper_steps_figure(self):
        """ROC curves at the paper's steps, one panel per family."""
        from miakit.book import plots

        return plots.roc_grid(at_paper_steps_by_family(self.loss, self.runs))

    def best_step_table(self):
        return best_step_table(self.loss)

    def blind_table(self):
        return self.blind.table()

    def chosen_roc_figure(self):
        """Log-log ROC of the loss attack at its chosen step beside the blind baselines."""
        from miakit.book import plots

        return plots.roc_loglog({**chosen_results(self.loss), **self.blind.results()},
                                title="Loss attack (chosen step) and the blind baselines")

    def headline_tables(self):
        return headline_tables(self.loss, self.runs)

    def verdicts(self) -> list[claims.Verdict]:
        return [iid_verdict(self.blind)]

    def glue_values(self) -> dict:
        st = self.loss[self.lead]
        summary = st.summary()
        return {"lead_family": self.lead, "chance_delta": claims.DELTA, **self.blind.glue_values(),
                "best_step": summary["best_step_val"], "best_step_label": st.label(summary["best_step_val"]),
                **st.chosen().named("best_auc"), **st.chosen(0.01).named("best_tpr_1pct"),
                "optimistic_auc": summary["result_test_chosen"].auc,
                "n_test_nonmembers": summary["result_val_chosen"].n_nonmembers,
                "auc_first_step": st.test[0].auc, "auc_last_step": st.test[-1].auc,
                "evaluations_per_image": len(st.steps) * self.settings.attack.n_noise}


def run_loss_chapter(settings, progress_bar: bool = True) -> LossChapter:
    """Chapter 02: every family's target (trained or loaded), its loss attack at every step of
    the grid (cached scores) and the lead family's blind baselines."""
    runs = train.ensure_all(settings, progress_bar)
    loss = loss_attack_studies(runs, progress_bar=progress_bar)
    lead = lead_family(loss)
    return LossChapter(settings, runs, loss, lead, blind.blind_study_of_run(runs[lead]))


@dataclass
class LikelihoodChapter(ChapterResult):
    """Chapter 03: the likelihood attack on every family's target, the loss attack beside it, and
    the likelihood's speed against the paper-style loop (P2)."""

    number = "03"

    settings: object
    runs: dict[str, Run]
    lik: dict[str, LikelihoodStudy]
    loss: dict[str, LossAttackStudy]
    lead: str
    blind: blind.BlindStudy
    timing: speed.LikelihoodSpeed

    def roc_figure(self):
        from miakit.book import plots

        return plots.roc_loglog(likelihood_results(self.lik), title="Likelihood attack (members positive)")

    def table(self):
        return likelihood_table(self.lik)

    def bpd_figure(self):
        from miakit.book import plots

        return plots.bpd_histograms(self.lik)

    def attack_table(self):
        return attack_table(self.loss, self.lik, self.blind)

    def timing_table(self):
        return self.timing.table()

    def verdicts(self) -> list[claims.Verdict]:
        return c1_verdicts(self.loss, self.lik)

    def glue_values(self) -> dict:
        st = self.lik[self.lead]
        return {"lead_family": self.lead, "chance_delta": claims.DELTA, "n_families": len(self.lik),
                "n_lower_bpd": members_lower_bpd(self.lik), **st.estimate.named("lead_auc"),
                "lead_test_members": len(st.logp_members), "lead_test_nonmembers": len(st.logp_nonmembers),
                **{f"p2_{k}": v for k, v in self.timing.headline().items()},
                "lead_seconds_per_image": st.seconds_per_image, "lead_nfe": st.nfe_per_image}


def run_likelihood_chapter(settings, progress_bar: bool = True) -> LikelihoodChapter:
    """Chapter 03: every family's likelihood study and loss study (cached), the lead family's
    blind baselines, and the likelihood's speed on its target."""
    runs = train.ensure_all(settings, progress_bar)
    lik = likelihood_studies(runs, progress_bar)
    lead = lead_family(lik)
    s = settings.speed
    timing = speed.likelihood_speed_of_run(runs[lead], s.speed_images, s.speed_batch, seed=settings.attack.attack_seed)
    return LikelihoodChapter(settings, runs, lik, loss_attack_studies(runs, progress_bar=progress_bar), lead,
                             blind.blind_study_of_run(runs[lead]), timing)


def loss_chapter_verdicts(settings, progress_bar: bool = True) -> list[claims.Verdict]:
    """Chapter 02's claim, from the run store: the split check on the lead family's target."""
    return run_loss_chapter(settings, progress_bar).verdicts()


def likelihood_chapter_verdicts(settings, progress_bar: bool = True) -> list[claims.Verdict]:
    """Chapter 03's claims, from the run store: C1 on every family, both attacks (without the
    speed measurement ``run_likelihood_chapter`` makes)."""
    runs = train.ensure_all(settings, progress_bar)
    return c1_verdicts(loss_attack_studies(runs, progress_bar=progress_bar), likelihood_studies(runs, progress_bar))


LOSS_CHAPTER = Chapter("02", "02_loss_attack", verdicts=loss_chapter_verdicts, loads=("01",))
LIKELIHOOD_CHAPTER = Chapter("03", "03_likelihood_attack", verdicts=likelihood_chapter_verdicts,
                             after=("02_loss_attack",), loads=("01",))
