"""Chapter 07: the defenses people deploy besides DP-SGD, on chapter 05's privacy-utility plane.

Every arm is trained on chapter 05's recipe (``dp_n_members`` members of the same split,
``dp_iterations`` steps of the same DP-SGD loop at expected batch ``dp_batch_size``, with neither
clipping nor noise: chapter 05's non-private arm), with the same training seeds, attacked by the
same attacks (``dp_attacks``: loss, likelihood and SimA by default) and measured by the same
sample quality (feature Frechet distance). The arms:

- ``no defense``: chapter 05's non-private arm itself;
- ``early stopping``: the same training, released where a trainer stops by the patience rule
  (``defense_patience``) on the validation loss of ``defense_held_out`` held-out images that no
  attack scores, evaluated ``defense_evaluations`` times (``miakit.training.early_stopping``);
- ``augmentation``: left-right flips and integer shifts of up to ``defense_shift`` pixels;
- ``weight decay w``: AdamW's decoupled decay, one arm per ``defense_weight_decays``;
- ``smaller UNet``: the ``defense_model`` preset;
- ``distillation``: a student of the same recipe trained only on ``defense_distill_samples``
  images its teacher (the no-defense target of the same seed) generated, never on a member;
- ``DP-SGD (epsilon = e)``: chapter 05's arm at ``defense_dp_epsilon``, the reference point;
  chapter 05's other arms draw DP-SGD's curve on the same axes.

No defense's hyperparameter is chosen on membership labels: each is fixed beforehand (the
profile's values), and early stopping's only data are held-out images.

The claims were written before any number of this chapter was seen, one per defense and
family (``verdicts``): the defense lowers the lead attack's AUC by more than ``REDUCTION``
against no defense (paired by seed and image), and its samples are better than DP-SGD's at
``defense_dp_epsilon`` (lower feature FD). Both must hold for REPRODUCED.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


from miakit import attacks
from miakit.chapters import differential_privacy as dp
from miakit.chapters.contract import Chapter, ChapterResult, Need, Training
from miakit.chapters.factors import compact, seeds
from miakit.core.config import Settings
from miakit.evidence import claims, metrics
from miakit.training import early_stopping, train

REDUCTION = 0.1  # the AUC a defense must take off the lead attack, written before the numbers


@dataclass(frozen=True)
class Defense:
    """One arm: ``change`` (target knobs) applied to chapter 05's no-defense target; an
    ``early_stop`` arm releases that target where the patience rule stops; ``chosen`` says how
    its hyperparameters were set (never on membership labels)."""

    label: str
    change: dict
    chosen: str
    early_stop: bool = False


def defense_arms(settings: Settings) -> list[Defense]:
    """The defenses of the chapter, in the order its table shows them."""
    e, p = settings.defenses, settings.privacy_study
    arms = [Defense(f"early stopping (patience {e.defense_patience})", {},
                    f"patience {e.defense_patience} over {e.defense_evaluations} evaluations on "
                    f"{e.defense_held_out} held-out images, fixed beforehand", early_stop=True),
            Defense(f"augmentation (flips, shifts up to {e.defense_shift} px)",
                    {"random_flip": True, "random_shift": e.defense_shift},
                    "the transforms of diffusion training on small images, fixed beforehand")]
    arms += [Defense(f"weight decay {w:g}", {"weight_decay": w}, "fixed beforehand (a common and a strong value)")
             for w in e.weight_decays()]
    if e.defense_model != settings.target.model:
        arms.append(Defense(f"smaller UNet ({e.defense_model})", {"model": e.defense_model},
                            "the next smaller preset, fixed beforehand"))
    if e.defense_distill_samples:
        arms.append(Defense(f"distillation ({e.defense_distill_samples} samples)",
                            {"distill_samples": e.defense_distill_samples, "distill_steps": p.utility_steps},
                            f"{e.defense_distill_samples} teacher samples at the chapter's {p.utility_steps} "
                            "sampler steps, fixed beforehand"))
    return arms


NO_DEFENSE = dp.ArmSpec("no defense", math.inf, math.inf)


def defense_settings(settings: Settings, family: str, defense: Defense, seed: int) -> Settings:
    """The target of ``defense`` for ``family`` and ``seed``: chapter 05's no-defense target changed
    by the defense's knobs."""
    base = dp.target_settings(settings, family, dp.arm_specs(settings)[0], seed)
    return dataclasses.replace(base, target=dataclasses.replace(base.target, **defense.change))


def dp_reference(settings: Settings) -> dp.ArmSpec:
    """Chapter 05's arm at ``defense_dp_epsilon``."""
    e = settings.defenses.defense_dp_epsilon
    return next(a for a in dp.arm_specs(settings) if a.epsilon == e)


def released(run: train.Run, settings: Settings) -> tuple[train.Run, early_stopping.Stop]:
    """``run`` as an early-stopping trainer releases it (``early_stopping.early_stop``); the run
    must hold the snapshots chapter 05's recipe keeps for it."""
    e = settings.defenses
    every = run.settings.target.snapshot_every
    expected = set(range(every, run.settings.target.iterations + 1, every)) if every else set()
    missing = sorted(expected - set(run.snapshot_iterations()))
    if not expected or missing:
        raise ValueError(f"{run.dir.name} lacks the snapshots early stopping evaluates (every {every} iterations; "
                         f"missing {missing[:5]}): it was trained before defense_evaluations asked for them; "
                         "remove the folder to retrain it")
    stop = early_stopping.early_stop(run, e.defense_patience, e.defense_held_out)
    return run.at(stop.released), stop


@dataclass
class DefenseStudy:
    """Chapter 05's arms (no defense, DP-SGD) and every defense arm, on one plane."""

    settings: Settings
    study: dp.TradeoffStudy  # every arm: chapter 05's and the defenses'
    defenses: dict[str, Defense]  # arm label -> its defense
    stops: dict[str, list[early_stopping.Stop]]  # family -> the early-stopping arm's stop per seed
    _decided: dict = dataclasses.field(default_factory=dict, repr=False)  # figure -> verdicts (bootstraps: once)

    def frame(self):
        out = self.study.frame()
        chosen = [self.defenses[a].chosen if a in self.defenses else
                  ("chapter 05's non-private arm" if a == NO_DEFENSE.label else "chapter 05's arm")
                  for a in out.index.get_level_values("arm")]
        return out.assign(**{"chosen without membership labels": chosen})

    def table(self):
        """Every attack on every arm, one row each (family, arm, attack): AUC with its interval
        and per seed, TPR at 1% FPR with its interval."""
        return dp.attacks_by_arm(self.frame(), self.study.attack_names())

    def quality_table(self):
        """Every arm's sample quality (feature FD with its 95% interval, and per seed), training
        time and how its hyperparameters were chosen (a column nothing could fill left out)."""
        return metrics.measurable(compact(self.frame()).reindex(
            columns=["feature FD [95%]", "feature FD per seed", "training seconds", "chosen without membership labels"]))

    def stops_table(self):
        """Where early stopping stopped, per family and seed."""
        import pandas as pd

        rows = [{"family": family, "seed": seed, "released at iteration": st.released,
                 "stopped at iteration": st.stopped_at if st.stopped_at is not None else "ran to the end",
                 "validation losses": " ".join(f"{v:.4f}" for v in st.losses)}
                for family, per_seed in self.stops.items() for seed, st in zip(seeds(self.settings), per_seed)]
        return pd.DataFrame(rows).set_index(["family", "seed"])

    def figure(self):
        from miakit.book import plots

        lead = attacks.get(self.study.attack_names()[0]).label
        return plots.defense_plane(self.frame(), lead, self.study.fd_floor, list(self.defenses))

    def verdicts(self, figure: str = "notebooks/07_defenses#plane") -> list[claims.Verdict]:
        """Per family and defense, the claim written before the numbers: the defense lowers the
        lead attack's AUC (the first of ``dp_attacks``) by more than ``REDUCTION`` against no
        defense, and its samples are better than DP-SGD's at ``defense_dp_epsilon``. Computed
        once (their bootstraps are the chapter's slowest step) and kept."""
        if figure not in self._decided:
            self._decided[figure] = self._verdicts(figure)
        return self._decided[figure]

    def _verdicts(self, figure: str) -> list[claims.Verdict]:
        out = []
        lead = self.study.attack_names()[0]
        label = attacks.get(lead).label
        ref = dp_reference(self.settings)
        for family in self.study.families():
            none = self.study.arm(family, NO_DEFENSE.label)
            for name in self.defenses:
                arm = self.study.arm(family, name)
                statement = (f"{name} lowers the {label} attack's AUC by more than {REDUCTION:g} against no defense, "
                             f"at a sample-quality cost below DP-SGD's at {ref.label}")
                checks = [claims.greater(f"{label} AUC: no defense - {name}", metrics.estimate_difference(
                    none.attack_arm(lead), arm.attack_arm(lead), paired=True), than=REDUCTION, grows=arm.grows(lead))]
                if self.study.reference_features is None:
                    out.append(claims.Verdict(f"D {name} ({family})", statement, tuple(checks), figure,
                                              note="sample quality not measured: " + "; ".join(self.study.notes)))
                    continue
                checks.append(claims.greater(f"feature FD: DP-SGD {ref.label} - {name}",
                                             self.study.fd_difference(family, ref.label, than=name)))
                out.append(claims.Verdict(f"D {name} ({family})", statement, tuple(checks), figure))
        return out


def study(settings: Settings, progress_bar: bool = True) -> DefenseStudy:
    """Every arm trained (or loaded), attacked and sampled, chapter 05's arms read from the store."""
    from miakit.chapters.feasibility import check
    check(settings)
    tradeoff = dp.tradeoff_study(settings, progress_bar)  # chapter 05's arms, cached
    arms, notes = list(tradeoff.arms), list(tradeoff.notes)
    reference = (None, None, math.nan, math.nan)
    defenses, stops = {}, {}
    for family in settings.privacy_study.families():
        base = [train.ensure(dp.target_settings(settings, family, dp.arm_specs(settings)[0], seed), progress_bar)
                for seed in seeds(settings)]
        reference = dp.feature_reference(base[0], [])
        for defense in defense_arms(settings):
            if defense.early_stop:
                pairs = [released(run, settings) for run in base]
                runs, stops[family] = [r for r, _ in pairs], [st for _, st in pairs]
            else:
                runs = [train.ensure(defense_settings(settings, family, defense, seed), progress_bar)
                        for seed in seeds(settings)]
            spec = dp.ArmSpec(defense.label, math.inf, math.inf)
            arms.append(dp.measure_arm(family, spec, runs, settings, reference, notes, progress_bar))
            defenses[defense.label] = defense
    for arm in arms:  # chapter 05's non-private arm is this chapter's no-defense arm
        if arm.spec.label == "non-private":
            arm.spec = NO_DEFENSE
    _, ref_features, floor, accuracy = reference
    return DefenseStudy(settings, dp.TradeoffStudy(arms, floor, accuracy, ref_features, notes), defenses, stops)


@dataclass
class Defenses(ChapterResult):
    """Chapter 07's result."""

    number = "07"

    settings: Settings
    defense_study: DefenseStudy

    def table(self):
        return self.defense_study.table()

    def quality_table(self):
        return self.defense_study.quality_table()

    def figure(self):
        return self.defense_study.figure()

    def stops_table(self):
        return self.defense_study.stops_table()

    def verdicts(self) -> list[claims.Verdict]:
        return self.defense_study.verdicts()

    def glue_values(self) -> dict:
        s, e = self.settings, self.settings.defenses
        verdicts = self.verdicts()
        count = {str(o): sum(v.outcome is o for v in verdicts) for o in claims.Outcome}
        return {"reduction": REDUCTION, "dp_reference": dp_reference(s).label, "n_seeds": s.comparison.n_seeds,
                "dp_n_members": s.privacy_study.dp_n_members, "dp_iterations": s.privacy_study.dp_iterations,
                "defense_patience": e.defense_patience, "defense_held_out": e.defense_held_out,
                "defense_evaluations": e.defense_evaluations, "n_defenses": len(self.defense_study.defenses),
                **{f"n_{k.lower()}": v for k, v in count.items()}}


def run(settings: Settings, progress_bar: bool = True) -> Defenses:
    """Chapter 07: every defense arm beside chapter 05's arms."""
    return Defenses(settings, study(settings, progress_bar))


def trainings(settings: Settings) -> list[Training]:
    """The defenses' own targets (early stopping and the reference arms are chapter 05's)."""
    return [Training("07", f"{family}, {d.label}, seed {seed}", defense_settings(settings, family, d, seed))
            for family in settings.privacy_study.families() for d in defense_arms(settings) if not d.early_stop
            for seed in seeds(settings)]


def images_needed(settings: Settings) -> list[Need]:
    """Chapter 05's images and early stopping's held-out images outside them."""
    d, p, e = settings.data, settings.privacy_study, settings.defenses
    return [Need("07", f"chapter 07's early stopping: dp_n_members={p.dp_n_members} + n_nonmembers={d.n_nonmembers} + "
                 f"defense_held_out={e.defense_held_out} held-out images", p.dp_n_members + d.n_nonmembers
                 + e.defense_held_out)]


def verdicts(settings: Settings, progress_bar: bool = True) -> list[claims.Verdict]:
    """Chapter 07's claims, from the run store."""
    return study(settings, progress_bar).verdicts()


CHAPTER = Chapter("07", "07_defenses", trainings, images_needed, verdicts, after=("05_differential_privacy",),
                  loads=("05",))
