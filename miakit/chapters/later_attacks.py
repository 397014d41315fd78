"""Beyond the paper: every registered attack on the same targets, the same split and one
protocol (chapter 06).

Each attack scores every part of the split at every setting of its grid
(``miakit.attacks``); its setting is chosen on the validation part (AUC) and reported on the
test part with bootstrap intervals (``miakit.evidence.metrics``); the best setting on the test part is
shown beside it, labelled optimistic. The likelihood attack, which tunes nothing, is read from
chapter 03's study (the same cache); the blind baselines are the floor. Scores are computed and
cached by ``miakit.attacks.scoring``, the one place where an attack meets a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from miakit import attacks
from miakit.attacks import blind, scoring
from miakit.evidence import claims, metrics
from miakit.chapters import benchmark, loss_and_likelihood
from miakit.chapters.contract import Chapter, ChapterResult, Need, Training
from miakit.training import train
from miakit.training.train import Run
from miakit.core.config import Settings

LATER_STATEMENT = (f"(ours) the later attack beats chance ({claims.BEATS_CHANCE_TEXT}) on this family, as C1 asks "
                   "of the paper's")
FPRS = metrics.LOW_FPRS


@dataclass(frozen=True)
class Protocol:
    """How an attack's own paper measured it on CIFAR-10 (read from its official code), and what
    it reports there where a source was checked (None: no number quoted)."""

    attack: str  # registry name
    paper: str
    data: str
    setting_chosen: str  # how the step / hyperparameters are picked
    low_fpr_tpr: str  # how TPR at a low FPR is computed
    published: str | None  # the reported numbers, as printed, with their source


# Read from the official repositories' evaluation code (jinhaoduan/SecMI mia_evals/secmia.py,
# kong13661/PIA DDPM/attack.py, mx-ethan-rao/SimA DDPM/attack.py). The papers' result tables
# could not be read offline in this project; the one number kept is labelled with its source.
# the saturated targets' results table, and its second half (what each attack cost)
TABLE_COLUMNS = (metrics.AUC_COLUMN, *[metrics.tpr_column(f) for f in FPRS], "chosen on validation")
COST_COLUMNS = ("best on test (optimistic)", "queries / image", "seconds / image (whole grid)", "members scored",
                "nonmembers scored", "note")
NOT_QUOTED = "not quoted: their table was not checked for this book"
PROTOCOLS = (
    Protocol("secmi", "Duan et al. 2023 (ICML)", "DDPM on 25,000 CIFAR-10 training images; 25,000 others held out",
             "fixed t_sec = 100, k = 10; the ASR threshold is the best of 2,000 on the evaluation data",
             "the grid point (2,000 thresholds) whose FPR is nearest the level: not interpolated, may exceed it",
             "AUC 0.881, ASR 0.811 (a maintainer's table in SecMI's GitHub issue #4; the thread does not name the "
             "dataset)"),
    Protocol("pia", "Kong et al. 2024 (ICLR)", "the same 25,000 / 25,000 CIFAR-10 split file as SecMI",
             "every t in steps of 10 is scored and the best t on the evaluation data is reported",
             "the last exact ROC point below the level, members positive", None),
    Protocol("pian", "Kong et al. 2024 (ICLR)", "as PIA", "as PIA", "as PIA", None),
    Protocol("sima", "Rao et al. 2025", "25,000 / 25,000 CIFAR-10 (its own checkpoint and split file)",
             "best t on the evaluation data, separately for each metric (AUC, ASR and TPR may come from different t)",
             "the last ROC point below the level with NONMEMBERS as the positive class: a different quantity "
             "from the members-positive TPR (AUC and ASR are unaffected)", None),
)


def protocol_table(later: "LaterAttacks | None" = None, family: str | None = None):
    """The attacks' own CIFAR-10 protocols (and numbers, where checked) beside this book's, as a
    pandas Styler (one column per attack; ``.data`` is the DataFrame):
    settings chosen on the validation part, reported on the test part, members positive, TPR at
    the largest ROC point with FPR at or below the level. With ``later``, this book's test AUC and
    TPR at 1% FPR on ``family`` (default: the lead family) in a last row."""
    import pandas as pd

    family = family or (loss_and_likelihood.lead_family(dict.fromkeys(later.families())) if later else None)
    rows = []
    for p in PROTOCOLS:
        row = {"attack": attacks.get(p.attack).label, "paper": p.paper, "their data": p.data,
               "their setting chosen": p.setting_chosen, "their TPR at low FPR": p.low_fpr_tpr,
               "they report on CIFAR-10": p.published or NOT_QUOTED}
        if later is not None and (family, p.attack) in later.outcomes:
            o = later.outcomes[(family, p.attack)]
            row[f"this book ({family}, other data)"] = (f"AUC {o.study.chosen().text()}; "
                                                        f"TPR@1%FPR {o.study.chosen(0.01).text()}")
        rows.append(row)
    # one column per attack, the aspects as rows: long cells wrap inside the text column instead of
    # six columns of prose running off it (and pandas cutting them at 50 characters)
    frame = pd.DataFrame(rows).set_index("attack").T
    return frame.style.set_properties(**{"text-align": "left", "white-space": "normal", "vertical-align": "top"})


@dataclass
class AttackOutcome:
    """One attack on one family's target: scores over its grid, chosen on validation."""

    attack: str
    family: str
    grid: list[dict]
    study: loss_and_likelihood.LossAttackStudy  # over grid indices: selection on validation, estimates on test
    seconds_per_image: float  # wall time per image and setting-grid, on this machine
    references: list = field(default_factory=list)  # reference models' runs (attacks that calibrate against them)

    @property
    def training_seconds(self) -> float:
        """Seconds spent training the reference models this attack needs (0 for the others)."""
        return float(sum(r.history.get("train_seconds_this_session", 0.0) for r in self.references))

    @property
    def cost_note(self) -> str:
        if not self.references:
            return ""
        return (f"+{len(self.references)} reference training(s) of the target's size, "
                f"{self.training_seconds:.0f} s here")

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


def attack_outcome(run: Run, name: str, progress_bar: bool = True, references=None,
                   settings=None) -> AttackOutcome:
    """Attack ``name`` on every part of ``run``'s split over its grid (the grid of ``settings``, by
    default the run's own), scored or loaded by ``scoring.score_split`` (which also trains the
    reference models an attack calibrating against them needs, unless ``references`` are given),
    its setting chosen on the validation part."""
    scored = scoring.score_split(run, name, settings, progress_bar, references)
    study = loss_and_likelihood.LossAttackStudy.from_scores(np.arange(len(scored.grid)), scored.scores)
    return AttackOutcome(name, run.family.name, scored.grid, study, scored.seconds_per_image, list(scored.references))


@dataclass
class LaterAttacks:
    """Every attack on every family, one protocol."""

    outcomes: dict[tuple[str, str], AttackOutcome]  # (family, attack) -> outcome
    likelihood: dict[str, loss_and_likelihood.LikelihoodStudy]
    blind: blind.BlindStudy | None
    not_run: dict[tuple[str, str], str] = field(default_factory=dict)  # (family, attack) -> why not
    _frame_kept: object = field(default=None, init=False, repr=False)  # _frame's table, its bootstraps run once

    def families(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.outcomes))

    def table(self):
        """AUC and TPR at 1% and 0.1% FPR (test part, setting chosen on validation, 95% bootstrap
        intervals) and the chosen setting; the likelihood attack (both parts of its subsets) and
        the blind floor beside. ``cost_table`` has the rest of each row."""
        return metrics.measurable(self._frame()[list(TABLE_COLUMNS)])

    def cost_table(self):
        """Per family and attack: the optimistic best-on-test AUC, the queries and seconds per
        image (the whole grid, on this machine), the members and nonmembers scored, and a note
        (the reference models' training time; why an attack was not run)."""
        return self._frame()[list(COST_COLUMNS)]

    def _frame(self):
        if self._frame_kept is None:
            self._frame_kept = self._build_frame()
        return self._frame_kept

    def _build_frame(self):
        import pandas as pd

        rows = []
        for (family, name), o in self.outcomes.items():
            a = attacks.get(name)
            est = o.study.chosen()
            rows.append({"family": family, "attack": a.label,
                         **metrics.estimate_row(est, {f: o.study.chosen(f) for f in FPRS}, counts=False),
                         "chosen on validation": a.describe(o.chosen_setting),
                         "best on test (optimistic)": f"{o.study.estimate(o.study.best_index_test).value:.3f} "
                                                      f"({a.describe(o.optimistic_setting)})",
                         "queries / image": o.queries, "seconds / image (whole grid)": round(o.seconds_per_image, 4),
                         "members scored": est.n_members, "nonmembers scored": est.n_nonmembers,
                         "note": o.cost_note})
        for (family, name), why in self.not_run.items():
            rows.append({"family": family, "attack": attacks.get(name).label, "note": why})
        for family, st in self.likelihood.items():
            m, n = st.logp_members, st.logp_nonmembers
            rows.append({"family": family, "attack": "likelihood",
                         **metrics.estimate_row(st.estimate, {f: metrics.estimate_split(m, n, statistic=f) for f in FPRS},
                                                counts=False),
                         "chosen on validation": "(nothing to choose)", "best on test (optimistic)": "-",
                         "queries / image": round(st.nfe_per_image, 1),
                         "seconds / image (whole grid)": round(st.seconds_per_image, 4),
                         "members scored": st.estimate.n_members, "nonmembers scored": st.estimate.n_nonmembers})
        if self.blind is not None:
            tprs = {f: self.blind.estimates(f) for f in FPRS}  # averaged within the cross-fitted halves
            for name, est in self.blind.estimates().items():
                rows.append({"family": "(no model)", "attack": f"blind: {name}",
                             **metrics.estimate_row(est, {f: tprs[f][name] for f in FPRS}, counts=False),
                             "chosen on validation": "(cross-fitted)", "best on test (optimistic)": "-",
                             "queries / image": 0, "seconds / image (whole grid)": "-",
                             "members scored": est.n_members, "nonmembers scored": est.n_nonmembers})
        frame = pd.DataFrame(rows).set_index(["family", "attack"])
        return frame.reindex(columns=[*TABLE_COLUMNS, *COST_COLUMNS]).fillna("")

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

    def verdicts(self, figure: str = "notebooks/06_later_attacks#every-attack", skip=()) -> list[claims.Verdict]:
        """(ours) Every later attack on every family where it was run beats chance, by the rule the
        paper's attacks are judged by in C1 (``claims.beats_chance``), at the setting chosen on the
        validation part; a reversed attack (whole interval below 0.5) comes out CONTRADICTED.
        Attacks in ``skip`` are left out (the claims page judges them on the benchmark targets)."""
        out = []
        for (family, name), o in self.outcomes.items():
            if attacks.get(name).paper or name in skip:
                continue
            label = f"{o.label} AUC ({attacks.get(name).describe(o.chosen_setting)})"
            out.append(claims.Verdict(f"L1 {o.label} ({family})", LATER_STATEMENT,
                                      (claims.beats_chance(label, o.study.chosen()),), figure))
        return out

    def glue_values(self) -> dict:
        """What the chapter's prose quotes: the lead family (``loss_and_likelihood.lead_family``), the later
        attack with the highest VALIDATION AUC on it (chosen without the test part) and its test AUC, the loss attack's
        AUC there, the reversed attacks (``reversed_attacks``), the reference attack's reference count,
        training seconds and AUC there, and every (family, attack)'s AUC
        as ``auc_<family>_<attack>``."""
        lead = loss_and_likelihood.lead_family(dict.fromkeys(self.families()))
        later = {name: o for (family, name), o in self.outcomes.items() if family == lead and not attacks.get(name).paper}
        best = max(later, key=lambda name: later[name].study.val[later[name].study.best_index_val].auc)
        reversed_ = self.reversed_attacks()
        out = {"lead_family": lead, "best_attack": later[best].label, "best_auc": later[best].study.chosen().value,
               "loss_auc": self.outcomes[(lead, "loss")].study.chosen().value,
               "reversed": ", ".join(reversed_) if reversed_ else "none", "n_reversed": len(reversed_)}
        ref = next((o for (family, _), o in self.outcomes.items() if family == lead and o.references), None)
        out.update({"n_references": len(ref.references) if ref else 0,
                    "reference_seconds": ref.training_seconds if ref else 0.0,
                    "reference_auc": ref.study.chosen().value if ref else float("nan")})
        out.update({f"auc_{family}_{name}": o.study.chosen().value for (family, name), o in self.outcomes.items()})
        return out


def later_attacks(runs: dict[str, Run], names=None, progress_bar: bool = True,
                  with_likelihood: bool = True) -> LaterAttacks:
    """Every attack in ``names`` (default: the registry's ``later_attacks`` defaults) on every
    family's target; the likelihood attack's study and the blind baselines (of the first run's
    split, which every family shares) beside them."""
    names = attacks.defaults("later_attacks") if names is None else list(names)
    if any(attacks.get(name).needs_references for name in names):
        for run in runs.values():  # a split too small for reference models fails before anything is computed
            for r in range(run.settings.attack.n_references):
                run.split.reference_members(r, run.settings.data.n_members)
    outcomes, not_run = {}, {}
    for family, run in runs.items():
        for name in names:
            why = not_run_reason(run, name)
            if why:
                not_run[(family, name)] = why
                continue
            outcomes[(family, name)] = attack_outcome(run, name, progress_bar)
    lik = loss_and_likelihood.likelihood_studies(runs, progress_bar) if with_likelihood else {}
    first = next(iter(runs.values()))
    return LaterAttacks(outcomes, lik, blind.blind_study_of_run(first), not_run)


def not_run_reason(run: Run, name: str) -> str | None:
    """Why attack ``name`` is not run on ``run`` (it is undefined for the family, or its grid is
    empty under these settings), or None."""
    a = attacks.get(name)
    why = a.undefined_for(run.family)
    if why:
        return f"not defined: {why}"
    if a.needs_references and run.settings.attack.n_references == 0:
        return "not run: n_references = 0 (each reference model is one more training of the target's size)"
    if not a.grid(run.settings):
        return "not run: no setting to try under these settings"
    return None


def trainings(settings: Settings) -> list[Training]:
    """Chapter 06's targets: the reference models of every family, and the benchmark regime's
    target of every family (``benchmark.trainings``)."""
    out = [Training("06", f"reference {r} of {family}", train.reference_settings(settings.for_family(family), r), r)
           for family in settings.family_names() for r in range(settings.attack.n_references)]
    return out + [Training("06", f"benchmark target {s.target.family}", s) for s in benchmark.trainings(settings)]


def images_needed(settings: Settings) -> list[Need]:
    """The reference models' members, from outside the split, and the benchmark regime's split of
    its own dataset (none when it is switched off)."""
    d, a, b = settings.data, settings.attack, settings.benchmark
    out = []
    if a.n_references:
        out.append(Need("06", f"chapter 06's reference models (n_references={a.n_references}): n_members={d.n_members} "
                        f"images outside the split of {d.n_members} + {d.n_nonmembers}", 2 * d.n_members + d.n_nonmembers))
    if benchmark.enabled(settings):
        out.append(Need("06", f"chapter 06's benchmark split: bench_n_members={b.bench_n_members} + "
                        f"bench_n_nonmembers={b.bench_n_nonmembers} of bench_dataset={b.bench_dataset!r}",
                        b.bench_n_members + b.bench_n_nonmembers, source="bench_dataset"))
    return out


@dataclass
class LaterAttacksChapter(ChapterResult):
    """Chapter 06: the benchmark regime (``benchmark.study``: targets where attacks separate) and
    every attack on the book's own targets."""

    number = "06"

    settings: Settings
    bench: "benchmark.Benchmark | benchmark.Off"
    later: LaterAttacks

    def regime_check(self):
        return self.bench.regime_check()

    def bench_table(self):
        return self.bench.table()

    def bench_roc_figure(self):
        return self.bench.roc_figure()

    def bench_curve_figure(self):
        return self.bench.curve_figure()

    def bench_cost_table(self):
        return self.bench.cost_table()

    def bench_recipe_table(self):
        return self.bench.recipe_table()

    def table(self):
        return self.later.table()

    def cost_table(self):
        return self.later.cost_table()

    def roc_figure(self):
        from miakit.book import plots

        return plots.roc_grid(self.later.roc_results())

    def curves_figure(self):
        from miakit.book import plots

        return plots.hyperparameter_curves(self.later.curves())

    def protocol_table(self):
        return protocol_table(self.later)

    def verdicts(self) -> list[claims.Verdict]:
        """(ours) L1 on every family for every later attack: on the benchmark targets for the
        attacks the regime runs and on the book's own targets for the others (on the own targets
        for all when ``bench_n_members`` = 0)."""
        if not benchmark.enabled(self.settings):
            return self.later.verdicts()
        return self.bench.verdicts() + self.later.verdicts(skip=set(benchmark.attack_names()))

    def glue_values(self) -> dict:
        return {**self.bench.glue_values(), **self.later.glue_values()}


def run(settings: Settings, progress_bar: bool = True, with_likelihood: bool = True) -> LaterAttacksChapter:
    """Chapter 06: the benchmark regime, then every registered ``later_attacks`` default on the
    book's own targets (the likelihood attack read from chapter 03's cache)."""
    bench = benchmark.study(settings, progress_bar)
    later = later_attacks(train.ensure_all(settings, progress_bar), progress_bar=progress_bar,
                          with_likelihood=with_likelihood)
    return LaterAttacksChapter(settings, bench, later)


def verdicts(settings: Settings, progress_bar: bool = True) -> list[claims.Verdict]:
    """Chapter 06's claims, from the run store (``LaterAttacksChapter.verdicts``)."""
    return run(settings, progress_bar, with_likelihood=False).verdicts()


CHAPTER = Chapter("06", "06_later_attacks", trainings, images_needed, verdicts,
                  after=("02_loss_attack", "03_likelihood_attack"), loads=("01",))
