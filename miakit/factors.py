"""What makes a diffusion model leak more: the paper's factor studies and computed verdicts.

Each study builds on runs in the run store, so chapter 04 run after chapters 01-03 retrains
nothing that is already there. Steps are always chosen on the validation part of the split and
reported on the test part. A claim passes when its effect (a difference in test AUC, oriented so
that the paper's claim means > 0) has the paper's sign and its 95% bootstrap interval excludes
zero; otherwise it did not reproduce here, and the tables say so with the numbers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import attacks, metrics, studies, train
from .config import Settings, stable_hash
from .store import read_arrays, write_arrays

N_BOOT = 1000


@dataclass(frozen=True)
class Difference:
    """AUC(a) - AUC(b) on the test split with a 95% bootstrap interval."""

    value: float
    low: float
    high: float

    @property
    def excludes_zero_above(self) -> bool:
        return self.value > 0 and self.low > 0

    def text(self) -> str:
        return f"{self.value:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def difference(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], paired: bool) -> Difference:
    """AUC of (members, nonmembers) scores ``a`` minus that of ``b``, bootstrapped."""
    return Difference(*metrics.bootstrap_auc_difference(*a, *b, paired=paired, n_boot=N_BOOT))


@dataclass(frozen=True)
class Verdict:
    """A claim of the paper tested on this build's runs."""

    claim: str
    statement: str
    passed: bool
    evidence: str  # the effect with its interval, or the numbers the check looked at

    def row(self) -> dict:
        return {"claim": self.claim, "statement": self.statement,
                "verdict": "reproduced" if self.passed else "not reproduced here", "evidence": self.evidence}


def tidy(frame, digits: int = 4):
    """A table for the book: numeric columns typed as numbers and rounded."""
    return frame.infer_objects().round(digits)


def verdict_table(verdicts: list[Verdict]):
    """One row per claim: what it says, pass/fail, and the numbers behind the verdict (a pandas
    Styler, so that the book shows the whole text; ``.data`` is the DataFrame)."""
    import pandas as pd

    frame = pd.DataFrame([v.row() for v in verdicts]).set_index("claim")
    return frame.style.set_properties(**{"text-align": "left", "white-space": "normal"})


def verdict_glue(verdicts: list[Verdict]) -> dict[str, str]:
    """``verdict_<claim>`` -> "reproduced" / "not reproduced here", for the book's prose."""
    return {"verdict_" + "".join(ch if ch.isalnum() else "_" for ch in v.claim).strip("_").replace("__", "_"):
            v.row()["verdict"] for v in verdicts}


def _interval(study: studies.LossAttackStudy, index: int) -> str:
    lo, hi = study.auc_interval(index, N_BOOT)
    return f"[{lo:.3f}, {hi:.3f}]"


def _chosen(study: studies.LossAttackStudy) -> tuple[np.ndarray, np.ndarray]:
    return study.test_scores(study.best_index_val)


# ------------------------------------------------------------------------ 1. diffusion step (C2)

@dataclass
class StepStudy:
    """Per family: the validation-chosen step against both ends of the process."""

    loss: dict[str, studies.LossAttackStudy]
    vs_first: dict[str, Difference] = field(default_factory=dict)
    vs_last: dict[str, Difference] = field(default_factory=dict)

    def table(self):
        import pandas as pd

        rows = {}
        for name, st in self.loss.items():
            j, last = st.best_index_val, len(st.steps) - 1
            rows[name] = {"step chosen on validation": studies.step_label(st.steps[j].item()),
                          "AUC there": st.test[j].auc, "interval": _interval(st, j),
                          "AUC at t = first": st.test[0].auc, "interval (first)": _interval(st, 0),
                          "AUC at t = last": st.test[last].auc, "interval (last)": _interval(st, last),
                          "chosen - first": self.vs_first[name].text(), "chosen - last": self.vs_last[name].text()}
        return tidy(pd.DataFrame(rows).T)

    def verdicts(self) -> list[Verdict]:
        names = list(self.loss)
        weakest = min(((n, end, d) for n in names for end, d in (("first", self.vs_first[n]), ("last", self.vs_last[n]))),
                      key=lambda item: item[2].low)
        near = {n: [self._near_chance(n, k) for k in (0, -1)] for n in names}
        ends = "; ".join(f"{n}: {self.loss[n].test[0].auc:.3f} at the first step, {self.loss[n].test[-1].auc:.3f} "
                         f"at the last" for n in names)
        return [
            Verdict("C2", "an intermediate step leaks most: the step chosen on validation beats both ends of the "
                    "process, on every family",
                    all(self.vs_first[n].excludes_zero_above and self.vs_last[n].excludes_zero_above for n in names),
                    f"weakest: {weakest[0]}, chosen - {weakest[1]} = {weakest[2].text()}"),
            Verdict("C2 (ends)", "t near 0 and t near T are near chance: both end-step AUC intervals contain 0.5, on "
                    "every family", all(all(v) for v in near.values()), ends),
        ]

    def _near_chance(self, name: str, index: int) -> bool:
        st = self.loss[name]
        lo, hi = st.auc_interval(index % len(st.steps), N_BOOT)
        return lo <= 0.5 <= hi


def step_study(loss: dict[str, studies.LossAttackStudy]) -> StepStudy:
    """Claim C2 from the loss-attack scores of chapter 02 (all steps, every family)."""
    out = StepStudy(loss)
    for name, st in loss.items():
        out.vs_first[name] = difference(_chosen(st), st.test_scores(0), paired=True)
        out.vs_last[name] = difference(_chosen(st), st.test_scores(len(st.steps) - 1), paired=True)
    return out


# -------------------------------------------------------------------- 2. training-set size (C3)

def size_epochs(settings: Settings) -> float:
    """The size study's budget in epochs: ``size_epochs``, or the profile's iterations x batch / members."""
    t = settings.target
    return settings.factors.size_epochs or t.iterations * t.batch_size / settings.data.n_members


def size_settings(settings: Settings) -> dict[int, Settings]:
    """One target per member-set size, each trained for ``size_epochs`` epochs, everything else equal."""
    t, d = settings.target, settings.data
    epochs = size_epochs(settings)
    out = {}
    for n in settings.factors.sizes():
        iterations = max(1, round(epochs * n / t.batch_size))
        out[n] = dataclasses.replace(settings, data=dataclasses.replace(d, n_members=n),
                                     target=dataclasses.replace(t, iterations=iterations))
    return out


def _size_target(settings: Settings, sized: Settings, progress_bar: bool) -> tuple[train.Run, int | None]:
    """(run, iteration to attack) for one size. When the chapter's own target has this member
    set and kept an EMA snapshot at the needed iteration, that snapshot is used: it is
    bit-identical to a shorter run (the learning-rate schedule does not depend on the total
    length), so nothing is trained again. Otherwise the sized target is trained (or loaded)."""
    if sized.data == settings.data and sized.target.iterations <= settings.target.iterations:
        run = train.ensure(settings, progress_bar)
        if sized.target.iterations in run.snapshot_iterations():
            return run, sized.target.iterations
    return train.ensure(sized, progress_bar), None


@dataclass
class FactorPoint:
    """One setting of a factor: the attack at its validation-chosen step, on the test split."""

    value: int
    study: studies.LossAttackStudy
    extra: dict = field(default_factory=dict)

    @property
    def auc(self) -> float:
        return self.study.test[self.study.best_index_val].auc

    def auc_interval(self) -> tuple[float, float]:
        return self.study.auc_interval(self.study.best_index_val, N_BOOT)

    def row(self) -> dict:
        st, j = self.study, self.study.best_index_val
        lo, hi = self.auc_interval()
        return {**self.extra, "step chosen on validation": studies.step_label(st.steps[j].item()),
                "AUC": st.test[j].auc, "AUC low": lo, "AUC high": hi,
                "TPR@1%FPR": st.test[j].tpr_at_fpr[0.01], "TPR@10%FPR": st.test[j].tpr_at_fpr[0.1],
                "test members": st.test[j].n_members, "test nonmembers": st.test[j].n_nonmembers}


@dataclass
class FactorStudy:
    """One factor's points, the AUC difference its claim is tested on, and the claim."""

    points: list[FactorPoint]
    effect: Difference
    axis: str  # the factor, which indexes the table
    claim: str
    statement: str
    compared: str  # what the effect subtracts, e.g. "AUC(50 members) - AUC(200 members)"

    def table(self):
        import pandas as pd

        return tidy(pd.DataFrame({p.value: p.row() for p in self.points}).T.rename_axis(self.axis))

    def verdict(self) -> Verdict:
        return Verdict(self.claim, self.statement, self.effect.excludes_zero_above,
                       f"{self.compared} = {self.effect.text()}")


def size_study(settings: Settings, progress_bar: bool = True) -> FactorStudy:
    """Train (or load) one target per member-set size and attack each on the factor step grid."""
    f = settings.factors
    points = []
    for n, s in sorted(size_settings(settings).items()):
        run, iteration = _size_target(settings, s, progress_bar)
        study = studies.loss_attack_study(run, progress_bar=progress_bar, n_steps=f.factor_steps,
                                          n_noise=f.factor_noise, iteration=iteration)
        points.append(FactorPoint(n, study, {
            "iterations": s.target.iterations, "epochs": s.target.iterations * s.target.batch_size / n,
            "model": f"the chapter's target at iteration {iteration}" if iteration else "trained for this study"}))
    small, large = points[0], points[-1]
    return FactorStudy(points, difference(_chosen(small.study), _chosen(large.study), paired=False), "members",
                       "C3", "smaller training sets leak more (same family, same budget in epochs)",
                       f"AUC({small.value} members) - AUC({large.value} members)")


# ------------------------------------------------------------------- 3. training length (C4)

def length_study(run: train.Run, progress_bar: bool = True) -> FactorStudy:
    """Attack every kept snapshot of ``run`` on the factor step grid. The mean loss over the
    grid's steps (evenly spread over the process, so close to the training objective) of members
    and of nonmembers shows the generalisation gap growing with training."""
    f = run.settings.factors
    iterations = run.snapshot_iterations()
    if len(iterations) < 2:
        raise ValueError(f"{run.dir} kept no snapshots along the way (snapshot_every = 0 when it was trained); "
                         "remove the folder and train with snapshot_every > 0")
    points = []
    for it in iterations:
        study = studies.loss_attack_study(run, progress_bar=progress_bar, n_steps=f.factor_steps,
                                          n_noise=f.factor_noise, iteration=it)
        loss_members = -np.r_[study.scores["members_val"], study.scores["members_test"]].mean()
        loss_nonmembers = -np.r_[study.scores["nonmembers_val"], study.scores["nonmembers_test"]].mean()
        points.append(FactorPoint(it, study, {"loss members": loss_members, "loss nonmembers": loss_nonmembers}))
    first, last = points[0], points[-1]
    return FactorStudy(points, difference(_chosen(last.study), _chosen(first.study), paired=True), "iteration",
                       "C4", "longer training leaks more (the same run, attacked along the way)",
                       f"AUC(iteration {last.value}) - AUC(iteration {first.value})")


# ------------------------------------------------------- 4. noise draws and step aggregation (ours)

@dataclass
class NoiseStudy:
    steps: np.ndarray  # the window of steps around the most vulnerable one
    center: int  # index of the most vulnerable step within ``steps``
    rows: dict  # label -> {"queries per image", "draws", "steps", "AUC", interval, TPR}

    def table(self):
        import pandas as pd

        return tidy(pd.DataFrame(self.rows).T)


def noise_study(run: train.Run, chapter_study: studies.LossAttackStudy, progress_bar: bool = True) -> NoiseStudy:
    """Loss attack with 1..max noise draws per step, at the validation-chosen step of chapter 02
    alone and averaged over a window of neighbouring steps of its grid."""
    f, a = run.settings.factors, run.settings.attack
    draws, width = f.draws(), f.step_window
    j = chapter_study.best_index_val
    lo = int(np.clip(j - width // 2, 0, max(0, len(chapter_study.steps) - width)))
    steps = chapter_study.steps[lo: lo + width]
    center = j - lo
    key = stable_hash({"attack": "loss-raw", "steps": steps.tolist(), "draws": max(draws), "seed": a.attack_seed})
    path = run.dir / f"loss-raw-{key}.safetensors"
    if path.exists():
        raw = read_arrays(path)
    else:
        raw = {part: attacks.losses(run.model, run.family, run.images(getattr(run.split, part)), steps, max(draws),
                                    a.attack_seed, a.attack_batch, progress_bar)
               for part in ("members_test", "nonmembers_test")}
        write_arrays(path, raw)
    rows = {}
    for k in draws:
        for label, sl in ((f"{studies.step_label(steps[center].item())} alone", slice(center, center + 1)),
                          (f"mean over {len(steps)} steps", slice(0, len(steps)))):
            m = attacks.member_score_from_loss(raw["members_test"][:, sl, :k].mean(axis=(1, 2)))
            n = attacks.member_score_from_loss(raw["nonmembers_test"][:, sl, :k].mean(axis=(1, 2)))
            result = metrics.evaluate_split(m, n)
            lo_, hi_ = metrics.bootstrap_auc(np.r_[m, n], np.r_[np.ones(len(m), bool), np.zeros(len(n), bool)], N_BOOT)
            n_steps = sl.stop - sl.start
            rows[f"{label}, {k} draw{'s' if k > 1 else ''}"] = {
                "steps": n_steps, "draws per step": k, "queries per image": n_steps * k, "AUC": result.auc,
                "AUC low": lo_, "AUC high": hi_, "TPR@1%FPR": result.tpr_at_fpr[0.01],
                "TPR@10%FPR": result.tpr_at_fpr[0.1]}
    return NoiseStudy(steps, center, rows)


# --------------------------------------------------------------- 5. likelihood settings (ours)

@dataclass
class LikelihoodSettingsStudy:
    rows: dict  # label -> {"tolerance", "probes", "AUC", interval, "seconds per image", "NFE per image"}

    def table(self):
        import pandas as pd

        return tidy(pd.DataFrame(self.rows).T)


def likelihood_settings_study(run: train.Run, progress_bar: bool = True) -> LikelihoodSettingsStudy:
    """The likelihood attack at each ODE tolerance (one probe) and with each number of
    Hutchinson probes (at the profile's tolerance), on the same test images."""
    f, c = run.settings.factors, run.settings.likelihood
    grid = [(tol, 1) for tol in f.tolerances()]
    grid += [(c.lik_rtol, k) for k in f.probe_counts() if (c.lik_rtol, k) not in grid]
    rows = {}
    for tol, k in grid:
        lik = dataclasses.replace(c, lik_rtol=tol, lik_atol=tol, lik_probes=k, lik_max_images=f.factor_lik_images)
        st = studies.likelihood_study(run, progress_bar, config=lik)
        rows[f"tolerance {tol:g}, {k} probe{'s' if k > 1 else ''}"] = {
            "tolerance": tol, "probes": k, "AUC": st.result.auc, "AUC low": st.auc_interval[0],
            "AUC high": st.auc_interval[1], "TPR@10%FPR": st.result.tpr_at_fpr[0.1],
            "seconds per image": st.seconds_per_image,
            "ODE evaluations per image": st.nfe_per_image,
            "test members": len(st.logp_members), "test nonmembers": len(st.logp_nonmembers)}
    return LikelihoodSettingsStudy(rows)
