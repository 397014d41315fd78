"""Chapter 06's benchmark regime: every attack on targets where attacks separate.

The book's own targets (chapters 01-05) memorise hard on purpose, to test the paper's claims in
minutes on a CPU: most attacks read an AUC near 1 there and the comparison cannot rank them, and
their 500 test nonmembers cannot resolve a TPR at 0.1% FPR. The benchmark regime is what the
attack papers compare on, at a CPU's scale: many members (``bench_n_members``: the paper's 1000 on
the gpu and paper profiles, 250 on the cpu profile, where 1000 members took ~10k iterations,
about 40 minutes a family, to reach the band), a large test part (``bench_n_nonmembers`` x
(1 - ``bench_val_fraction``), at least 5000 nonmembers so that TPR at 1% and 0.1% FPR have
intervals) and a training length at which attacks do not saturate.

**The length is chosen on validation, per family.** The families memorise at different speeds
(measured on the cpu recipe: after 3000 iterations SimA's validation AUC was 0.82 on DDPM and 1.0
on SMLD and VE-SDE), so one length cannot put every family in the band. Each target trains for
``bench_iterations`` and keeps ``SNAPSHOTS`` EMA snapshots along the way; the probe attack
(``PROBE``, SimA: one query per setting) scores its grid on the validation part at every
snapshot, and the snapshot whose best validation AUC lies nearest the band's centre is the
family's benchmark target (``choose_length``). Every attack is then run on that snapshot. The
test part plays no role in any choice.
Its targets keep the profile's recipe (UNet, batch, warm-up, EMA) with their own learning rate
(``bench_lr``) and train on their own dataset (``bench_dataset``).

The cost stays small because only the validation part is scored over each attack's grid: the
setting with the best validation AUC is the only one scored on the large test part. The loss
attack's grid is its ``LOSS_STEPS`` coarse steps here (its 41 x 4 queries per image took 2/3 of the
validation scoring on the cpu profile); chapter 02 draws its curve over the fine grid. Both are
cached in the run folder by ``miakit.attacks.scoring`` (keys cover the parts, the grid and the model).

How the cpu profile's length was chosen (on validation data only) is in
``benchmarks/bench_recipe.py``; ``Benchmark.recipe_table`` shows in every build how the probe's
validation AUC grows along the snapshots of each target, and ``Benchmark.regime_check`` whether
the strongest attack landed in the band the regime aims for.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from miakit import attacks
from miakit.attacks import blind, scoring
from miakit.evidence import claims, metrics
from miakit.core import data
from miakit.training import train
from miakit.core.config import Settings
from miakit.training.train import Run

BAND = (0.75, 0.95)  # validation AUC of each target's strongest attack the regime aims for
FPRS = metrics.LOW_FPRS
VAL_PARTS = ("members_val", "nonmembers_val")
TEST_PARTS = ("members_test", "nonmembers_test")
SNAPSHOTS = 6  # EMA snapshots along each benchmark target's training (the lengths to choose from)
LOSS_STEPS = 11  # the loss attack's grid here: every 100th paper step (chapter 02 draws the fine curve)
PROBE = "sima"  # the attack whose validation AUC chooses each family's length (one query per setting)


def enabled(settings: Settings) -> bool:
    """Whether ``settings`` ask for the benchmark regime (``bench_n_members`` > 0)."""
    return settings.benchmark.bench_n_members > 0


def bench_settings(settings: Settings) -> Settings:
    """The benchmark targets' settings: the profile's recipe on the regime's dataset, split and
    length, with ``SNAPSHOTS`` EMA snapshots along the training (the lengths ``choose_length``
    picks from; snapshots do not change the weights or the run key)."""
    b = settings.benchmark
    if not enabled(settings):
        raise ValueError("bench_n_members = 0: the benchmark regime is switched off")
    every = max(1, b.bench_iterations // SNAPSHOTS) if b.bench_iterations >= SNAPSHOTS else 0
    return dataclasses.replace(
        settings,
        data=dataclasses.replace(settings.data, dataset=b.bench_dataset, n_members=b.bench_n_members,
                                 n_nonmembers=b.bench_n_nonmembers, val_fraction=b.bench_val_fraction),
        target=dataclasses.replace(settings.target, iterations=b.bench_iterations, lr=b.bench_lr,
                                   snapshot_every=every),
        attack=dataclasses.replace(settings.attack, n_references=0,
                                   attack_steps=min(settings.attack.attack_steps, LOSS_STEPS)))


def trainings(settings: Settings) -> list[Settings]:
    """One benchmark target per family (none when the regime is off): what the budget counts."""
    if not enabled(settings):
        return []
    bench = bench_settings(settings)
    return [bench.for_family(name) for name in settings.family_names()]


def ensure_targets(settings: Settings, progress_bar: bool = True) -> dict[str, Run]:
    """The benchmark target of every family, trained or loaded."""
    return train.ensure_all(bench_settings(settings), progress_bar)


def attack_names() -> list[str]:
    """The registered attacks the regime runs: every attack studied on whole split parts that
    needs no reference models (``not_run_here`` says why the others are left out)."""
    return [name for name, a in attacks.REGISTRY.items() if a.max_images is None and not a.needs_references]


def not_run_here() -> dict[str, str]:
    """Registered attacks the regime leaves out, and why."""
    out = {}
    for name, a in attacks.REGISTRY.items():
        if a.needs_references:
            out[name] = ("not run in the benchmark regime: each reference model is one more training of "
                         "bench_n_members images (see the book's own targets below)")
        elif a.max_images is not None:
            out[name] = ("not run in the benchmark regime: an adaptive ODE solve per test image (chapter 03 "
                         "measures it on the book's own targets)")
    return out


@dataclass
class BenchOutcome:
    """One attack on one benchmark target: its grid scored on the validation part, the setting
    with the best validation AUC scored on the test part."""

    attack: str
    family: str
    grid: list[dict]
    val: list[metrics.AttackResult]  # per setting, validation part
    chosen_index: int
    members: np.ndarray  # test members' scores at the chosen setting (higher = member)
    nonmembers: np.ndarray  # test nonmembers' scores there
    seconds_per_image: float  # validation grid and test setting, per scored image
    _estimates: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return attacks.get(self.attack).label

    @property
    def chosen_setting(self) -> dict:
        return self.grid[self.chosen_index]

    @property
    def val_auc(self) -> float:
        """Validation AUC at the chosen setting (what chose it)."""
        return self.val[self.chosen_index].auc

    @property
    def queries(self):
        return attacks.get(self.attack).queries(self.chosen_setting)

    def estimate(self, statistic="auc") -> metrics.Estimate:
        """Test AUC (or TPR at a float FPR) at the chosen setting, with its 95% bootstrap interval."""
        if statistic not in self._estimates:
            self._estimates[statistic] = metrics.estimate_split(self.members, self.nonmembers, statistic=statistic)
        return self._estimates[statistic]

    def result(self) -> metrics.AttackResult:
        return metrics.evaluate_split(self.members, self.nonmembers)


def choose(val: list[metrics.AttackResult]) -> int:
    """The setting with the best validation AUC (the first of equals)."""
    return int(np.nanargmax([r.auc for r in val]))


def outcome(run: Run, name: str, progress_bar: bool = True, iteration: int | None = None) -> BenchOutcome:
    """Attack ``name`` on ``run`` (its EMA snapshot at ``iteration``; the final model by default):
    its grid on the validation part, the chosen setting on the test part (both cached by
    ``scoring.score_split``)."""
    grid = attacks.get(name).grid(run.settings)
    val = scoring.score_split(run, name, progress_bar=progress_bar, parts=VAL_PARTS, grid=grid, iteration=iteration)
    results = [metrics.evaluate_split(val.scores["members_val"][:, j], val.scores["nonmembers_val"][:, j])
               for j in range(len(grid))]
    j = choose(results)
    test = scoring.score_split(run, name, progress_bar=progress_bar, parts=TEST_PARTS, grid=[grid[j]],
                               iteration=iteration)
    n_val = sum(len(val.scores[p]) for p in VAL_PARTS)
    n_test = sum(len(test.scores[p]) for p in TEST_PARTS)
    seconds = (val.seconds_per_image * n_val + test.seconds_per_image * n_test) / (n_val + n_test)
    return BenchOutcome(name, run.family.name, grid, results, j, test.scores["members_test"][:, 0],
                        test.scores["nonmembers_test"][:, 0], seconds)


@dataclass
class Benchmark:
    """Every attack of the regime on every family's benchmark target."""

    settings: Settings  # the benchmark targets' settings (``bench_settings``)
    split: "data.Split"  # their split (every family's target shares it)
    outcomes: dict[tuple[str, str], BenchOutcome]  # (family, attack) -> outcome
    not_run: dict[tuple[str, str], str]  # (family, attack) -> why not
    blind: blind.BlindStudy | None
    recipe: dict[str, list[tuple[int, float]]]  # family -> (iteration, the probe's best validation AUC)
    lengths: dict[str, int]  # family -> the iteration chosen on validation (``choose_length``)
    train_seconds: dict[str, float]  # family -> training seconds of its target

    def families(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.outcomes))

    def strongest(self, family: str) -> BenchOutcome:
        """The attack with the best validation AUC on ``family`` (chosen on validation only)."""
        found = [o for (f, _), o in self.outcomes.items() if f == family]
        return max(found, key=lambda o: o.val_auc)

    def table(self):
        """Per family and attack: test AUC and TPR at 1% and 0.1% FPR (95% bootstrap intervals) at
        the setting chosen on validation, that setting and its validation AUC; the blind floor
        (never queries a model) beside them. Every row has the test part's counts
        (``glue_values``); ``cost_table`` says whose statistic each is, its queries and seconds,
        and why an attack was not run."""
        import pandas as pd

        rows = []
        for (family, name), o in self.outcomes.items():
            a = attacks.get(name)
            rows.append({"family": family, "attack": a.label,
                         **metrics.estimate_row(o.estimate(), {f: o.estimate(f) for f in FPRS}, counts=False),
                         "chosen on validation": a.describe(o.chosen_setting),
                         "validation AUC": round(o.val_auc, 3)})
        if self.blind is not None:
            for name, est in self.blind.estimates().items():
                tprs = {f: self.blind.estimates(f)[name] for f in FPRS}
                rows.append({"family": "(no model)", "attack": f"blind: {name}",
                             **metrics.estimate_row(est, tprs, counts=False),
                             "chosen on validation": "(cross-fitted)"})
        return pd.DataFrame(rows).astype(object).fillna("").set_index(["family", "attack"])

    def cost_table(self):
        """Per family and attack: whose statistic it is (the authors' form or our mapping), the
        model queries per image at its chosen setting and the seconds per scored image on this
        machine (validation grid and chosen test setting together); the attacks not run, and why."""
        import pandas as pd

        rows = [{"family": f, "attack": o.label, "statistic": attacks.get(name).form(family_of(f)),
                 "queries / image": o.queries, "seconds / image": round(o.seconds_per_image, 4)}
                for (f, name), o in self.outcomes.items()]
        rows += [{"family": f, "attack": attacks.get(name).label, "statistic": why}
                 for (f, name), why in self.not_run.items()]
        return pd.DataFrame(rows).astype(object).fillna("").set_index(["family", "attack"])

    def roc_results(self) -> dict[str, dict[str, metrics.AttackResult]]:
        """family -> attack label -> test result at the validation-chosen setting."""
        out: dict[str, dict[str, metrics.AttackResult]] = {}
        for (family, _), o in self.outcomes.items():
            out.setdefault(family, {})[o.label] = o.result()
        return out

    def curves(self):
        """Validation AUC per setting of every attack (the test part is scored at the chosen
        setting only, so there is no test curve: nothing on it was chosen)."""
        import pandas as pd

        frames = []
        for (family, _), o in self.outcomes.items():
            a = attacks.get(o.attack)
            frames.append(pd.DataFrame({"setting": [a.describe(g) for g in o.grid],
                                        "AUC (validation)": [r.auc for r in o.val],
                                        **{k: [g[k] for g in o.grid] for k in o.grid[0]}})
                          .assign(family=family, attack=o.label))
        return pd.concat(frames, ignore_index=True)

    def regime_check(self):
        """Per family: the strongest attack (on validation) and its validation AUC, whether it lies
        in ``BAND``, and its test AUC; a target outside the band is named, not hidden."""
        import pandas as pd

        rows = {}
        for family in self.families():
            o = self.strongest(family)
            lo, hi = BAND
            rows[family] = {"strongest attack (validation)": f"{o.label} ({attacks.get(o.attack).describe(o.chosen_setting)})",
                            "validation AUC": round(o.val_auc, 3),
                            f"in [{lo:g}, {hi:g}]": "yes" if lo <= o.val_auc <= hi else
                            ("no: saturated" if o.val_auc > hi else "no: weak"),
                            "test AUC [95%]": o.estimate().text(),
                            "iterations (chosen on validation)": self.lengths[family],
                            "iterations trained": self.settings.target.iterations,
                            "training seconds here": round(self.train_seconds.get(family, math.nan))}
        return pd.DataFrame(rows).T

    def recipe_table(self):
        """The probe attack's best validation AUC along each target's EMA snapshots (how far
        training has to go before the band is reached), the chosen length of each family marked *."""
        import pandas as pd

        return pd.DataFrame({family: {it: f"{auc:.3f}" + (" *" if it == self.lengths[family] else "")
                                      for it, auc in points}
                             for family, points in self.recipe.items()}).rename_axis(
            f"iteration ({attacks.get(PROBE).label}, best validation AUC)")

    def roc_figure(self):
        """Log-log ROC curves on the test part, one panel per family, every attack at its
        validation-chosen setting."""
        from miakit.book import plots

        return plots.roc_grid(self.roc_results())

    def curve_figure(self):
        """Validation AUC at every setting of each attack's grid (``curves``)."""
        from miakit.book import plots

        return plots.hyperparameter_curves(self.curves())

    def reversed_attacks(self) -> list[str]:
        """``"<family>: <attack>"`` where the test AUC's whole 95% interval lies below 0.5: members
        score lower in the attack's published orientation (a reversed signal, not chance)."""
        return [f"{family}: {o.label}" for (family, _), o in self.outcomes.items() if o.estimate().high < 0.5]

    def verdicts(self, figure: str = "notebooks/06_later_attacks#benchmark") -> list[claims.Verdict]:
        """(ours) L1: every attack after the paper beats chance on every family's benchmark target
        (``claims.beats_chance``, at the setting chosen on validation)."""
        out = []
        for (family, name), o in self.outcomes.items():
            if attacks.get(name).paper:
                continue
            label = f"{o.label} AUC ({attacks.get(name).describe(o.chosen_setting)})"
            out.append(claims.Verdict(f"L1 {o.label} ({family})", L1_STATEMENT,
                                      (claims.beats_chance(label, o.estimate()),), figure))
        return out

    def glue_values(self) -> dict:
        """What chapter 06's prose quotes about the regime."""
        b = self.settings
        lead = next(iter(self.families()), None)
        out = {"bench_dataset": b.data.dataset, "bench_n_members": b.data.n_members,
               "bench_iterations": b.target.iterations,
               "bench_lengths": ", ".join(f"{f} {n}" for f, n in self.lengths.items()),
               **{f"bench_{part}": len(getattr(self.split, part)) for part in VAL_PARTS + TEST_PARTS},
               "bench_band": f"[{BAND[0]:g}, {BAND[1]:g}]",
               "bench_in_band": ", ".join(f for f in self.families() if BAND[0] <= self.strongest(f).val_auc <= BAND[1])
               or "none",
               "bench_out_of_band": ", ".join(f"{f} ({self.strongest(f).val_auc:.3f})" for f in self.families()
                                              if not BAND[0] <= self.strongest(f).val_auc <= BAND[1]) or "none"}
        if lead is not None:
            s = self.strongest(lead)
            out.update({"bench_lead_family": lead, "bench_best_attack": s.label, "bench_best_auc": s.estimate().value,
                        "bench_best_tpr1": s.estimate(0.01).value, "bench_best_auc_text": s.estimate().text(),
                        "bench_best_tpr1_text": s.estimate(0.01).text(),
                        "bench_best_tpr01_text": s.estimate(0.001).text()})
        reversed_ = self.reversed_attacks()
        out["bench_reversed"] = ", ".join(reversed_) if reversed_ else "none"
        return out


L1_STATEMENT = (f"(ours) the later attack beats chance ({claims.BEATS_CHANCE_TEXT}) on this family's benchmark "
                "target (chapter 06: a target where attacks separate, judged on its large test part)")


def family_of(name: str):
    from miakit.diffusion import family
    return family(name)


def probe_curve(run: Run, progress_bar: bool = True) -> list[tuple[int, float]]:
    """(iteration, best validation AUC over ``PROBE``'s grid) at every EMA snapshot of ``run``."""
    grid = attacks.get(PROBE).grid(run.settings)
    out = []
    for iteration in run.snapshot_iterations():
        scored = scoring.score_split(run, PROBE, progress_bar=progress_bar, parts=VAL_PARTS, grid=grid,
                                     iteration=iteration)
        out.append((iteration, max(metrics.auc_of(scored.scores["members_val"][:, j],
                                                  scored.scores["nonmembers_val"][:, j]) for j in range(len(grid)))))
    return out


def choose_length(curve: list[tuple[int, float]], band: tuple[float, float] = BAND) -> int:
    """The iteration whose validation AUC lies nearest the band's centre (the earlier of equals)."""
    centre = sum(band) / 2
    return min(curve, key=lambda point: (abs(point[1] - centre), point[0]))[0]


def benchmark(settings: Settings, names=None, progress_bar: bool = True) -> Benchmark:
    """Every attack in ``names`` (default ``attack_names()``) on every family's benchmark target
    at the length chosen on validation (``probe_curve``, ``choose_length``), with the blind floor
    of its split. An attack the regime does not run (``not_run_here``) is refused before anything
    is trained."""
    names = list(names or attack_names())
    skipped = not_run_here()
    for name in names:
        attacks.get(name)  # an unknown name fails here
        if name in skipped:
            raise ValueError(f"{name!r} is not run in the benchmark regime: {skipped[name]}")
    runs = ensure_targets(settings, progress_bar)
    not_run = {("(every family)", name): why for name, why in skipped.items()}
    outcomes, recipe, lengths = {}, {}, {}
    for family, run in runs.items():
        recipe[family] = probe_curve(run, progress_bar)
        lengths[family] = choose_length(recipe[family])
        for name in names:
            if attacks.get(name).undefined_for(run.family):
                continue  # a continuous-time form on a discrete family: its absence is no result
            outcomes[(family, name)] = outcome(run, name, progress_bar, iteration=lengths[family])
    first = next(iter(runs.values()))
    return Benchmark(first.settings, first.split, outcomes, not_run, blind.blind_study_of_run(first), recipe,
                     lengths, {f: float(r.history.get("train_seconds_this_session", math.nan)) for f, r in runs.items()})


OFF_NOTE = "bench_n_members = 0: the benchmark regime is switched off in this build"


class Off:
    """What chapter 06 shows when the benchmark regime is switched off (``bench_n_members`` = 0):
    the same calls as ``Benchmark``, each answering with ``OFF_NOTE``."""

    def regime_check(self):
        return OFF_NOTE

    table = recipe_table = cost_table = regime_check

    def roc_figure(self):
        return None

    curve_figure = roc_figure

    def verdicts(self, figure: str = "") -> list:
        return []

    def glue_values(self) -> dict:
        keys = ("bench_dataset", "bench_n_members", "bench_iterations", "bench_lengths", "bench_members_val", "bench_nonmembers_val",
                "bench_members_test", "bench_nonmembers_test", "bench_band", "bench_in_band", "bench_out_of_band",
                "bench_lead_family", "bench_best_attack", "bench_best_auc_text", "bench_best_tpr1_text",
                "bench_best_tpr01_text", "bench_reversed")
        return {k: ("n/a (regime off)" if k not in ("bench_n_members", "bench_iterations") and "_val" not in k
                    and "_test" not in k else 0) for k in keys} | {"bench_best_auc": math.nan, "bench_best_tpr1": math.nan}


def study(settings: Settings, progress_bar: bool = True) -> "Benchmark | Off":
    """Chapter 06's benchmark regime (``benchmark``), or ``Off`` when ``bench_n_members`` = 0."""
    return benchmark(settings, progress_bar=progress_bar) if enabled(settings) else Off()
