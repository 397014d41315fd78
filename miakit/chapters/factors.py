"""What makes a diffusion model leak more: the paper's factor studies and their verdicts.

Each study builds on runs in the run store, so chapter 04 run after chapters 01-03 retrains
nothing that is already there. A step chosen on data is reported on images it was not chosen
on: chosen on the validation part and reported on the test part (C2's interior step, the noise
study), or cross-fitted over both parts (C3, C4: ``arm_of``); a step fixed in advance (C2's ends
of the process) is reported on the whole split. Verdicts come from ``miakit.evidence.claims`` (three-valued, with
intervals); comparisons between separately trained targets rest on ``n_seeds`` training seeds
per arm, and their intervals resample the seeds as well as the images.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np

from miakit import attacks
from miakit.evidence import claims, metrics
from miakit.chapters import loss_and_likelihood
from miakit.chapters.contract import Chapter, ChapterResult, Need, Training
from miakit.training import train
from miakit.core.config import Settings


def tidy(frame, digits: int = 4):
    """A table for the book: numeric columns typed as numbers and rounded."""
    return frame.infer_objects().round(digits)


def compact(frame, digits: int = 3):
    """A narrow table for the book: each "<x>" with "<x> low" and "<x> high" becomes one column
    "<x> [95%]" reading "value [low, high]", and "<x> seed <s>" columns become one "<x> per
    seed" column; numbers are rounded; a column no row can fill is left out and a lone missing
    value reads as not measurable (``metrics.measurable``). (Plots read the wide frame.)"""
    out = frame.infer_objects().copy()
    for col in list(frame.columns):
        lo, hi = f"{col} low", f"{col} high"
        if lo in out.columns and hi in out.columns:
            text = [f"{v:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]" if np.isfinite(v) else np.nan
                    for v, a, b in zip(out[col].astype(float), out[lo].astype(float), out[hi].astype(float))]
            position = out.columns.get_loc(col)
            out = out.drop(columns=[col, lo, hi])
            out.insert(position, f"{col} [95%]", text)
    seeds = {}
    for col in out.columns:
        match = re.fullmatch(r"(.+) seed (\S+)", str(col))
        if match:
            seeds.setdefault(match.group(1), []).append(col)
    for name, cols in seeds.items():
        position = out.columns.get_loc(cols[0])
        text = [" ".join(f"{v:.{digits}f}" for v in row) for row in out[cols].astype(float).to_numpy()]
        out = out.drop(columns=cols)
        out.insert(position, f"{name} per seed", text)
    return metrics.measurable(out.round(digits))


def seeds(settings: Settings) -> list[int]:
    """The training seeds of every arm: ``train_seed`` and the ``n_seeds - 1`` after it."""
    return [settings.target.train_seed + i for i in range(settings.comparison.n_seeds)]


def with_seed(settings: Settings, seed: int) -> Settings:
    return dataclasses.replace(settings, target=dataclasses.replace(settings.target, train_seed=seed))


def chosen_scores(study: loss_and_likelihood.LossAttackStudy) -> tuple[np.ndarray, np.ndarray]:
    """Test members' and nonmembers' scores at the step chosen on validation."""
    return study.test_scores(study.best_index_val)


def arm_of(loss_studies: list[loss_and_likelihood.LossAttackStudy]) -> metrics.Arm:
    """The arm of one or more seeds' studies of the same split, cross-fitted
    (``LossAttackStudy.cross_fitted``): every member and nonmember is scored at a step chosen
    without it, so the comparison rests on the whole split rather than its test half; the
    statistic is computed within each half and averaged."""
    fitted = [st.cross_fitted() for st in loss_studies]
    return metrics.Arm.of(((m, n) for m, n, _, _ in fitted), fitted[0][2], fitted[0][3])


# ------------------------------------------------------------------------ 1. diffusion step (C2)

ENDS = {"t -> 0": ("least noise", 0), "t -> T": ("most noise", -1)}  # end -> (noise level, index in the grid)


def _label(study: loss_and_likelihood.LossAttackStudy, index: int) -> str:
    """The label of step ``index`` of ``study`` (``LossAttackStudy.label``: with the paper's
    label beside ours where the family's differ, as for SMLD; ``loss_and_likelihood.step_label`` otherwise)."""
    step = study.steps[index].item()
    return study.label(step) if hasattr(study, "label") else loss_and_likelihood.step_label(step)


def whole_split_scores(study: loss_and_likelihood.LossAttackStudy, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Every member's and nonmember's score (validation and test parts together) at step
    ``index``: at a step fixed in advance nothing is chosen on the data, so every image of the
    split can be scored."""
    s = study.scores
    return (np.r_[s["members_val"][:, index], s["members_test"][:, index]],
            np.r_[s["nonmembers_val"][:, index], s["nonmembers_test"][:, index]])


@dataclass
class StepStudy:
    """Per family: the validation-chosen interior step against both ends of the process (the
    test part, paired), and the AUC at each end of the process on the whole split.

    The ends are named by noise level: ``t -> 0`` is the least-noise end (the first step of the
    family's grid, ``Family.attack_steps``, which runs from the least noise to the most) and
    ``t -> T`` the most-noise end (the last step); their labels come from ``loss_and_likelihood.step_label``
    (through ``LossAttackStudy.label``, which adds the paper's label where it is mirrored)."""

    loss: dict[str, loss_and_likelihood.LossAttackStudy]
    vs_first: dict[str, metrics.Estimate] = field(default_factory=dict)
    vs_last: dict[str, metrics.Estimate] = field(default_factory=dict)
    ends: dict[tuple[str, str], metrics.Estimate] = field(default_factory=dict)  # (end, family) -> AUC, whole split

    def end_label(self, name: str, end: str) -> str:
        return _label(self.loss[name], ENDS[end][1])

    def table(self):
        import pandas as pd

        rows = {}
        for name, st in self.loss.items():
            j = st.best_interior_index_val
            row = {"interior step chosen on validation": _label(st, j),
                   "AUC there, test part [95%]": st.estimate(j).text(),
                   "TPR@1%FPR there, test part [95%]": st.estimate(j, 0.01).text()}
            for end, (level, _) in ENDS.items():
                row[f"{end} ({level}): step"] = self.end_label(name, end)
                row[f"{end}: AUC, whole split [95%]"] = self.ends[(end, name)].text()
            row.update({"chosen - t -> 0, test part": self.vs_first[name].text(signed=True),
                        "chosen - t -> T, test part": self.vs_last[name].text(signed=True)})
            rows[name] = row
        return pd.DataFrame(rows).T

    def verdicts(self, figure: str = "notebooks/04_factors#c2") -> list[claims.Verdict]:
        """C2 (the interior step beats both ends, every family: one verdict) and the ends at
        chance: one verdict per end and family, ``C2 t -> 0 (<family>)`` and ``C2 t -> T
        (<family>)``, each the rule ``claims.within`` on the whole split at that end (decided at
        margin ``claims.DELTA``, shown at ``claims.MARGINS``).

        One verdict per (end, family) rather than one per end over the four families: an
        equivalence over k families holds only when all k intervals fall inside the band, so
        its chance of coming out REPRODUCED when every end is exactly at chance is that of one
        check to the k-th power. Simulated at the cpu profile's sizes (the whole split of 100
        members and 1000 nonmembers; member and nonmember scores from one distribution; 1000
        bootstrap resamples): one end of one family comes out REPRODUCED in 85% of 1000
        simulated splits at margin 0.1 (``claims.chance_power``, the normal approximation the
        book quotes: 0.82) and in none at margin 0.05 (the interval is about 0.118 wide); the
        four families together would come out REPRODUCED in 55% (150 simulated sets of four),
        and the old verdict, on the test part alone (50 + 500), in 31% per check."""
        beats = []
        for n, st in self.loss.items():
            chosen = _label(st, st.best_interior_index_val)
            beats += [claims.greater(f"{n}: AUC({chosen}) - AUC(t -> 0, {self.end_label(n, 't -> 0')}), test part",
                                     self.vs_first[n]),
                      claims.greater(f"{n}: AUC({chosen}) - AUC(t -> T, {self.end_label(n, 't -> T')}), test part",
                                     self.vs_last[n])]
        out = [claims.Verdict("C2", "an intermediate step leaks most: the interior step chosen on validation beats both "
                              "ends of the process, on every family", tuple(beats), figure)]
        for end, (level, _) in ENDS.items():
            for n in self.loss:
                check = claims.within(f"AUC({self.end_label(n, end)}), whole split", self.ends[(end, n)],
                                      grows=claims.EVERY_MEMBER_SCORED)
                out.append(claims.Verdict(
                    f"C2 {end} ({n})", f"at the {level} end of the process ({end}) the loss attack is at chance "
                    f"({claims.AT_CHANCE_TEXT}) on this family", (check,), figure))
        return out


    def ends_summary(self) -> str:
        """The end verdicts in one line for the book's prose, e.g. "t -> 0: ddpm REPRODUCED,
        smld UNDECIDED; t -> T: ddpm REPRODUCED, smld REPRODUCED"."""
        outcomes = {v.claim: v.outcome for v in self.verdicts()}
        return "; ".join(f"{end}: " + ", ".join(f"{n} {outcomes[f'C2 {end} ({n})']}" for n in self.loss)
                         for end in ENDS)

    def whole_split_size(self) -> tuple[int, int]:
        """(members, nonmembers) each end is judged on (the smallest over families)."""
        return (min(e.n_members for e in self.ends.values()), min(e.n_nonmembers for e in self.ends.values()))


def step_study(loss: dict[str, loss_and_likelihood.LossAttackStudy]) -> StepStudy:
    """Claim C2 from the loss-attack scores of chapter 02 (all steps, every family): the best
    step strictly inside the process, chosen on validation, against both ends on the test part
    (paired); and each end's AUC on the whole split (``whole_split_scores``)."""
    out = StepStudy(loss)
    for name, st in loss.items():
        chosen = metrics.Arm(*st.test_scores(st.best_interior_index_val))
        out.vs_first[name] = metrics.estimate_difference(chosen, metrics.Arm(*st.test_scores(0)), paired=True)
        out.vs_last[name] = metrics.estimate_difference(chosen, metrics.Arm(*st.test_scores(len(st.steps) - 1)),
                                                        paired=True)
        for end, (_, index) in ENDS.items():
            out.ends[(end, name)] = metrics.estimate_split(*whole_split_scores(st, index % len(st.steps)))
    return out


# -------------------------------------------------------------------- 2. training-set size (C3)

BUDGETS = ("equal epochs", "equal iterations")


def size_plan(settings: Settings) -> dict[int, dict[str, int]]:
    """Iterations per member-set size and budget. The chapter's target (``n_members`` members,
    ``iterations`` iterations) is the reference: at equal epochs a set of n members trains for
    iterations x n / n_members, at equal iterations for the same number of iterations."""
    n0, it = settings.data.n_members, settings.target.iterations
    return {n: {"equal epochs": max(1, round(it * n / n0)), "equal iterations": it}
            for n in settings.factors.sizes()}


def _sized(settings: Settings, n: int, iterations: int, seed: int, snapshot_every: int) -> Settings:
    return dataclasses.replace(
        settings, data=dataclasses.replace(settings.data, n_members=n),
        target=dataclasses.replace(settings.target, iterations=iterations, train_seed=seed,
                                   snapshot_every=snapshot_every))


def size_run_settings(settings: Settings, n: int, seed: int) -> Settings:
    """The run trained for ``n`` members and ``seed``: one per size and seed, trained for the
    longer of the two budgets and keeping EMA snapshots at a spacing that holds the shorter one
    (the reference size keeps the profile's snapshots, which the training-length study reads)."""
    needed = sorted(set(size_plan(settings)[n].values()))
    every = settings.target.snapshot_every if n == settings.data.n_members else math.gcd(*needed)
    return _sized(settings, n, needed[-1], seed, every)


def _size_model(settings: Settings, n: int, iterations: int, seed: int, progress_bar: bool):
    """(run, iteration to attack or None for its final model) of size ``n``'s budget of
    ``iterations``: the run of ``size_run_settings``, at its snapshot when the budget is the
    shorter one. A snapshot is bit-identical to a run stopped there (neither the learning-rate
    schedule nor the bias-corrected EMA depends on the total length), so nothing is trained twice."""
    longer = size_run_settings(settings, n, seed)
    run = train.ensure(longer, progress_bar)
    if iterations == longer.target.iterations:
        return run, None
    if iterations in run.snapshot_iterations():
        return run, iterations
    return train.ensure(dataclasses.replace(longer, target=dataclasses.replace(longer.target, iterations=iterations)),
                        progress_bar), None


@dataclass
class SizePoint:
    """One member-set size under one budget: the loss attack on each seed's target."""

    members: int
    budget: str
    iterations: int
    epochs: float  # passes over the member set
    studies: list[loss_and_likelihood.LossAttackStudy]
    seeds: list[int]

    def arm(self) -> metrics.Arm:
        return arm_of(self.studies)

    def estimate(self, statistic="auc") -> metrics.Estimate:
        return metrics.estimate(self.arm(), statistic)


@dataclass
class SizeStudy:
    points: list[SizePoint]
    reference: int  # the chapter target's member count

    def point(self, budget: str, n: int) -> SizePoint:
        return next(p for p in self.points if p.budget == budget and p.members == n)

    def sizes(self) -> list[int]:
        return sorted({p.members for p in self.points})

    def effect(self, budget: str) -> metrics.Estimate:
        """AUC(smallest set) - AUC(largest set) under ``budget`` (different images: unpaired)."""
        small, large = self.point(budget, self.sizes()[0]), self.point(budget, self.sizes()[-1])
        return metrics.estimate_difference(small.arm(), large.arm(), paired=False)

    def frame(self):
        """Per budget and size: per-seed AUCs, the mean over seeds with its interval, TPR@1%FPR."""
        import pandas as pd

        rows = []
        for p in self.points:
            auc, tpr = p.estimate(), p.estimate(0.01)
            rows.append({"budget": p.budget, "members": p.members, "iterations": p.iterations,
                         "epochs": p.epochs, **{f"AUC seed {s}": v for s, v in zip(p.seeds, auc.per_seed)},
                         "AUC": auc.value, "AUC low": auc.low, "AUC high": auc.high,
                         "TPR@1%FPR": tpr.value, "TPR@1%FPR low": tpr.low, "TPR@1%FPR high": tpr.high,
                         "members scored": auc.n_members, "nonmembers scored": auc.n_nonmembers})
        return tidy(pd.DataFrame(rows).set_index(["budget", "members"]))

    def table(self):
        return compact(self.frame())

    def verdicts(self, figure: str = "notebooks/04_factors#c3") -> list[claims.Verdict]:
        """C3 per budget. Each arm is defined by its member count and scores every member of its
        split (cross-fitted), so only more test nonmembers and training seeds could narrow the
        interval (``claims.EVERY_MEMBER_SCORED``): an UNDECIDED verdict names no member count."""
        small, large = self.sizes()[0], self.sizes()[-1]
        return [claims.Verdict(f"C3 ({budget})", f"smaller training sets leak more ({budget} with the "
                               f"{self.reference}-member target)",
                               (claims.greater(f"AUC({small} members) - AUC({large} members)", self.effect(budget),
                                               grows=claims.EVERY_MEMBER_SCORED),),
                               figure) for budget in BUDGETS]


def size_study(settings: Settings, progress_bar: bool = True) -> SizeStudy:
    """Train (or load) one target per member-set size, budget and seed, and attack each on the
    factor step grid."""
    f = settings.factors
    points = []
    for n, budgets in sorted(size_plan(settings).items()):
        for budget in BUDGETS:
            per_seed = []
            for seed in seeds(settings):
                run, iteration = _size_model(settings, n, budgets[budget], seed, progress_bar)
                per_seed.append(loss_and_likelihood.loss_attack_study(run, progress_bar=progress_bar, n_steps=f.factor_attack_steps,
                                                          n_noise=f.factor_n_noise, iteration=iteration))
            epochs = budgets[budget] * settings.target.batch_size / n
            points.append(SizePoint(n, budget, budgets[budget], epochs, per_seed, seeds(settings)))
    return SizeStudy(points, settings.data.n_members)


# ------------------------------------------------------------------- 3. training length (C4)

def ema_horizon(decay: float) -> int:
    """The EMA's time constant 1 / (1 - decay) in iterations: the first snapshot the length
    study compares is the first at or after it, where the (bias-corrected) average no longer
    leans on the first few iterations."""
    return math.ceil(1.0 / (1.0 - decay) - 1e-9) if decay > 0 else 1


@dataclass
class LengthStudy:
    iterations: list[int]  # snapshots compared (each seed has them all)
    studies: dict[int, list[loss_and_likelihood.LossAttackStudy]]  # iteration -> one study per seed
    seeds: list[int]
    horizon: int
    losses: dict[int, tuple[float, float]]  # iteration -> mean loss of members, of nonmembers

    def arm(self, iteration: int) -> metrics.Arm:
        return arm_of(self.studies[iteration])

    def effect(self) -> metrics.Estimate:
        """AUC(last) - AUC(first compared snapshot): same images and same seeds (paired)."""
        return metrics.estimate_difference(self.arm(self.iterations[-1]), self.arm(self.iterations[0]), paired=True)

    def frame(self):
        """Per compared snapshot: per-seed AUCs, the mean with its interval, TPR@1%FPR, losses."""
        import pandas as pd

        rows = {}
        for it in self.iterations:
            auc, tpr = metrics.estimate(self.arm(it)), metrics.estimate(self.arm(it), 0.01)
            rows[it] = {**{f"AUC seed {s}": v for s, v in zip(self.seeds, auc.per_seed)},
                        "AUC": auc.value, "AUC low": auc.low, "AUC high": auc.high,
                        "TPR@1%FPR": tpr.value, "TPR@1%FPR low": tpr.low, "TPR@1%FPR high": tpr.high,
                        "loss members": self.losses[it][0], "loss nonmembers": self.losses[it][1]}
        return tidy(pd.DataFrame(rows).T.rename_axis("iteration"))

    def table(self):
        return compact(self.frame())

    def verdict(self, figure: str = "notebooks/04_factors#c4") -> claims.Verdict:
        """C4: the snapshots of the same runs, cross-fitted, score every member
        (``claims.EVERY_MEMBER_SCORED``)."""
        first, last = self.iterations[0], self.iterations[-1]
        return claims.Verdict("C4", "longer training leaks more (the same runs, attacked along the way)",
                              (claims.greater(f"AUC(iteration {last}) - AUC(iteration {first})", self.effect(),
                                              grows=claims.EVERY_MEMBER_SCORED),),
                              figure)


def length_study(settings: Settings, progress_bar: bool = True) -> LengthStudy:
    """Attack the kept EMA snapshots of the chapter's target, for every training seed, on the
    factor step grid, from the first snapshot at or after the EMA horizon to the end. The mean
    loss over the grid's steps (spread over the whole process, so close to the training
    objective) of members and of nonmembers shows the generalisation gap growing."""
    f, t = settings.factors, settings.target
    runs = [train.ensure(with_seed(settings, s), progress_bar) for s in seeds(settings)]
    horizon = ema_horizon(t.ema_decay)
    common = sorted(set.intersection(*(set(r.snapshot_iterations()) for r in runs)))
    compared = [it for it in common if it >= horizon]
    if len(compared) < 2:
        raise ValueError(f"the length study needs two EMA snapshots at or after iteration {horizon} (the EMA "
                         f"horizon) in every seed's run, found {compared} (snapshot_every = {t.snapshot_every}); "
                         "train with a smaller snapshot_every (remove the run folders to retrain)")
    by_iteration, losses = {}, {}
    for it in compared:
        by_iteration[it] = [loss_and_likelihood.loss_attack_study(r, progress_bar=progress_bar, n_steps=f.factor_attack_steps,
                                                      n_noise=f.factor_n_noise, iteration=it) for r in runs]
        losses[it] = tuple(float(-np.mean([np.r_[st.scores[f"{who}_val"], st.scores[f"{who}_test"]].mean()
                                           for st in by_iteration[it]])) for who in ("members", "nonmembers"))
    return LengthStudy(compared, by_iteration, seeds(settings), horizon, losses)


# ------------------------------------------------------- 4. noise draws and step aggregation (ours)

@dataclass
class NoiseStudy:
    steps: np.ndarray  # the window of steps around the most vulnerable one
    center: int  # index of the most vulnerable step within ``steps``
    rows: dict  # label -> {"queries per image", "draws", "steps", "AUC", interval, TPR}

    def frame(self):
        import pandas as pd

        return tidy(pd.DataFrame(self.rows).T)

    def table(self):
        return compact(self.frame())


def noise_study(run: train.Run, chapter_study: loss_and_likelihood.LossAttackStudy, progress_bar: bool = True) -> NoiseStudy:
    """Loss attack with 1..max noise draws per step, at the validation-chosen step of chapter 02
    alone and averaged over a window of neighbouring steps of its grid."""
    f, a = run.settings.factors, run.settings.attack
    draws, width = f.draws(), f.step_window
    j = chapter_study.best_index_val
    lo = int(np.clip(j - width // 2, 0, max(0, len(chapter_study.steps) - width)))
    steps = chapter_study.steps[lo: lo + width]
    center = j - lo
    parts = ("members_test", "nonmembers_test")
    raw = run.cached("loss-raw", {"steps": steps.tolist(), "draws": max(draws), "seed": a.attack_seed},
                     {part: getattr(run.split, part) for part in parts},
                     lambda: {part: attacks.losses(run.model, run.family, run.images(getattr(run.split, part)), steps,
                                                   max(draws), a.attack_seed, a.attack_batch, progress_bar,
                                                   ids=getattr(run.split, part)) for part in parts})
    rows = {}
    for k in draws:
        for label, sl in ((f"{loss_and_likelihood.step_label(steps[center].item())} alone", slice(center, center + 1)),
                          (f"mean over {len(steps)} steps", slice(0, len(steps)))):
            m = attacks.member_score_from_loss(raw["members_test"][:, sl, :k].mean(axis=(1, 2)))
            n = attacks.member_score_from_loss(raw["nonmembers_test"][:, sl, :k].mean(axis=(1, 2)))
            auc, tpr = metrics.estimate_split(m, n), metrics.estimate_split(m, n, statistic=0.01)
            n_steps = sl.stop - sl.start
            rows[f"{label}, {k} draw{'s' if k > 1 else ''}"] = {
                "steps": n_steps, "draws per step": k, "queries per image": n_steps * k, "AUC": auc.value,
                "AUC low": auc.low, "AUC high": auc.high, "TPR@1%FPR": tpr.value,
                "TPR@1%FPR low": tpr.low, "TPR@1%FPR high": tpr.high}
    return NoiseStudy(steps, center, rows)


# --------------------------------------------------------------- 5. likelihood settings (ours)

@dataclass
class LikelihoodSettingsStudy:
    rows: dict  # label -> {"tolerance", "probes", "AUC", interval, "seconds per image", "NFE per image"}

    def frame(self):
        import pandas as pd

        return tidy(pd.DataFrame(self.rows).T)

    def table(self):
        """The attack and its cost at each setting (the settings are the row names; the images
        scored, the same in every row, are in the text)."""
        return compact(self.frame()).drop(columns=["tolerance", "probes", "members scored", "nonmembers scored"],
                                          errors="ignore")


def likelihood_settings_study(run: train.Run, progress_bar: bool = True) -> LikelihoodSettingsStudy:
    """The likelihood attack at each ODE tolerance (one probe) and with each number of
    Hutchinson probes (at the profile's tolerance), on the same test images."""
    f, c = run.settings.factors, run.settings.likelihood
    grid = [(tol, 1) for tol in f.tolerances()]
    grid += [(c.lik_rtol, k) for k in f.probe_counts() if (c.lik_rtol, k) not in grid]
    rows = {}
    for tol, k in grid:
        lik = dataclasses.replace(c, lik_rtol=tol, lik_atol=tol, lik_probes=k, lik_max_images=f.factor_lik_max_images)
        st = loss_and_likelihood.likelihood_study(run, progress_bar, config=lik)
        rows[f"tolerance {tol:g}, {k} probe{'s' if k > 1 else ''}"] = {
            "tolerance": tol, "probes": k, "AUC": st.estimate.value, "AUC low": st.estimate.low,
            "AUC high": st.estimate.high, "TPR@1%FPR": st.tpr_estimate.value,
            "TPR@1%FPR low": st.tpr_estimate.low, "TPR@1%FPR high": st.tpr_estimate.high,
            "TPR@10%FPR": st.result.tpr_at_fpr[0.1],
            "seconds per image": st.seconds_per_image,
            "ODE evaluations per image": st.nfe_per_image,
            "members scored": len(st.logp_members), "nonmembers scored": len(st.logp_nonmembers)}
    return LikelihoodSettingsStudy(rows)


def trainings(settings: Settings) -> list[Training]:
    """Chapter 04's targets that chapter 01 did not train: one per member-set size and seed
    (trained for the longer budget; the profile's own size with the first seed is chapter 01's
    target of the lead family), and the length study's extra seeds when the profile's own size is
    not among the sizes."""
    t = settings.target
    lead = loss_and_likelihood.lead_family(dict.fromkeys(settings.family_names()))
    lead_settings = settings.for_family(lead)
    out = []
    for n in sorted(size_plan(settings)):
        for seed in seeds(settings):
            if n == settings.data.n_members and seed == t.train_seed:
                continue  # chapter 01's target of the lead family
            out.append(Training("04", f"size {n}, seed {seed} ({lead})", size_run_settings(lead_settings, n, seed)))
    if settings.data.n_members not in size_plan(settings):  # the length study's extra seeds
        out += [Training("04", f"seed {seed} ({lead})", with_seed(lead_settings, seed)) for seed in seeds(settings)[1:]]
    return out


def images_needed(settings: Settings) -> list[Need]:
    """The size study's member sets, each with the split's nonmembers."""
    d = settings.data
    return [Need("04", f"chapter 04's size study: size_n_members entry {n} + n_nonmembers={d.n_nonmembers}",
                 n + d.n_nonmembers) for n in settings.factors.sizes()]


@dataclass
class Factors(ChapterResult):
    """Chapter 04: what makes the leakage larger, on the lead family (every study and the seconds
    each took)."""

    number = "04"

    settings: Settings
    runs: dict[str, train.Run]
    loss: dict[str, loss_and_likelihood.LossAttackStudy]
    lead: str
    step: StepStudy
    size: SizeStudy
    length: LengthStudy
    noise: NoiseStudy
    lik: LikelihoodSettingsStudy
    seconds: dict[str, float]  # study -> wall-clock seconds

    def metrics_figure(self):
        from miakit.book import plots

        return plots.metrics_vs_step_by_family(self.loss, self.runs)

    def step_table(self):
        return self.step.table()

    def size_table(self):
        return self.size.table()

    def length_table(self):
        return self.length.table()

    def noise_table(self):
        return self.noise.table()

    def likelihood_table(self):
        return self.lik.table()

    def size_figure(self):
        from miakit.book import plots

        return plots.size_study(self.size.frame())

    def length_figure(self):
        from miakit.book import plots

        return plots.auc_against_factor(self.length.frame(), "training iterations",
                                        "Attack AUC along training (mean over seeds)",
                                        loss_columns=["loss members", "loss nonmembers"])

    def noise_figure(self):
        from miakit.book import plots

        return plots.auc_against_cost(self.noise.frame(), "queries per image", "Loss attack: AUC against queries per image")

    def likelihood_figure(self):
        from miakit.book import plots

        return plots.auc_against_cost(self.lik.frame(), "seconds per image", "Likelihood attack: AUC against cost",
                                      tpr="TPR@10%FPR")

    def verdicts(self) -> list[claims.Verdict]:
        return [*self.step.verdicts(), *self.size.verdicts(), self.length.verdict()]

    def glue_values(self) -> dict:
        s = self.settings
        end_members, end_nonmembers = self.step.whole_split_size()
        test_part = self.loss[self.lead].test_scores(0)
        power = claims.chance_power(end_members, end_nonmembers)
        return {"lead_family": self.lead, "chance_delta": claims.DELTA, "narrow_margin": min(claims.MARGINS),
                "end_members": end_members, "end_nonmembers": end_nonmembers, "n_families": len(self.loss),
                "end_power": power, "end_power_all": power ** len(self.loss),
                "end_power_narrow": claims.chance_power(end_members, end_nonmembers, min(claims.MARGINS)),
                "end_power_test_part": claims.chance_power(len(test_part[0]), len(test_part[1])),
                "c2_ends": self.step.ends_summary(), "n_seeds": s.comparison.n_seeds,
                "iterations": s.target.iterations, "n_members": s.data.n_members, "ema_horizon": self.length.horizon,
                "factor_attack_steps": s.factors.factor_attack_steps,
                "factor_lik_max_images": s.factors.factor_lik_max_images,
                **{f"seconds_{name}": value for name, value in self.seconds.items()}}


def run(settings: Settings, progress_bar: bool = True) -> Factors:
    """Chapter 04: the step study on every family's loss attack (cached scores), then on the lead
    family the size, length, noise-draw and likelihood-settings studies, each timed (the step
    study's seconds include loading the targets and their cached scores)."""
    began = time.perf_counter()  # the step study's seconds include loading the targets and their scores
    runs = train.ensure_all(settings, progress_bar)
    loss = loss_and_likelihood.loss_attack_studies(runs, progress_bar=progress_bar)
    lead = loss_and_likelihood.lead_family(runs)
    seconds, studies = {}, {}
    lead_settings = settings.for_family(lead)
    for name, make in (("step", lambda: step_study(loss)), ("size", lambda: size_study(lead_settings, progress_bar)),
                       ("length", lambda: length_study(lead_settings, progress_bar)),
                       ("noise", lambda: noise_study(runs[lead], loss[lead], progress_bar)),
                       ("likelihood", lambda: likelihood_settings_study(runs[lead], progress_bar))):
        studies[name] = make()
        seconds[name], began = round(time.perf_counter() - began, 1), time.perf_counter()
    return Factors(settings, runs, loss, lead, studies["step"], studies["size"], studies["length"], studies["noise"],
                   studies["likelihood"], seconds)


def verdicts(settings: Settings, progress_bar: bool = True) -> list[claims.Verdict]:
    """Chapter 04's claims, from the run store: C2 (the step study), C3 (the size study) and C4
    (the length study), on the lead family."""
    runs = train.ensure_all(settings, progress_bar)
    lead = loss_and_likelihood.lead_family(runs)
    out = step_study(loss_and_likelihood.loss_attack_studies(runs, progress_bar=progress_bar)).verdicts()
    out += size_study(settings.for_family(lead), progress_bar).verdicts()
    out.append(length_study(settings.for_family(lead), progress_bar).verdict())
    return out


CHAPTER = Chapter("04", "04_factors", trainings, images_needed, verdicts, after=("02_loss_attack",),
                  loads=("01",))
