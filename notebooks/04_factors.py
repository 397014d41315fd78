# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What makes a diffusion model leak more
#
# Hu & Pang (2023) study which factors change how well the attacks work. This chapter repeats
# their studies of the diffusion step (claim C2), the size of the training set (C3) and the
# length of training (C4) on this build's targets, and adds two of our own: how many noise draws
# the loss attack needs, and what the likelihood attack's solver settings and number of
# Hutchinson probes buy.
#
# Every verdict is computed by the rules of the claims layer (`miakit.evidence.claims`): a claim that A
# leaks more than B is REPRODUCED when the 95% bootstrap interval of AUC(A) - AUC(B) lies wholly
# above zero, CONTRADICTED when it lies wholly below, and UNDECIDED otherwise. An UNDECIDED
# verdict states the number of test images that would decide it at the observed effect where
# more images can: not where both sides sit at a ceiling (AUC 1.000 against 1.000, a tie no
# sample separates), and never by adding members where every member of the compared targets is
# already scored (a target is defined by its members: C2's ends on the whole split, C3's arms of
# different member counts, C4's cross-fitted snapshots), where only more nonmembers or training
# seeds can be added. "At chance" is an equivalence statement: the whole AUC interval inside
# 0.5 +/- {glue:text}`chance_delta:.2g`, CONTRADICTED when it lies wholly outside; it is decided at that
# margin, and the claims table shows beside it what it would be at
# 0.5 +/- {glue:text}`narrow_margin:.2g`. Comparisons between separately trained targets rest
# on {glue:text}`n_seeds:d` training seeds per arm, and their intervals resample the seeds as
# well as the images. A step chosen on data is never reported on the images it was chosen on:
# chosen on the validation part and reported on the test part, or cross-fitted over both parts
# (each half at the step chosen on the other); a step fixed in advance is reported on the whole
# split. Targets and scores come from the run store: run after chapters 01-03, this chapter
# trains only the extra seeds and the targets of the training-set-size study.

# %% tags=["remove-cell"]
# Colab only: install miakit once (re-running is safe; does nothing elsewhere).
import importlib.util
import subprocess
import sys

_MIAKIT_URL = "https://github.com/miakit/miakit"  # a fork: set repository.url in _config.yml and run `make notebooks`
if "google.colab" in sys.modules and importlib.util.find_spec("miakit") is None:
    _pip = [sys.executable, "-m", "pip", "install", "-q", f"miakit[hub] @ git+{_MIAKIT_URL}"]
    if subprocess.run(_pip).returncode:
        raise RuntimeError(f"pip could not install miakit from {_MIAKIT_URL} (its output is above). If that "
                           "repository is private, moved or not yet pushed, set _MIAKIT_URL in this cell to "
                           "your fork (https://github.com/<you>/<fork>) and run the cell again.")
    importlib.invalidate_caches()

# %% tags=["parameters", "hide-cell"]
# None: the profile's value (`python -m miakit --profile cpu` lists them); every parameter it lists is accepted
profile: str = "cpu"  # smoke | cpu | gpu | paper
dataset: str = None
resolution: int = None
n_members: int = None
n_nonmembers: int = None
families: str = None  # comma-separated; default "all": every registered family
model: str = None
iterations: int = None
batch_size: int = None  # images per optimizer step
lr: float = None  # peak learning rate
snapshot_every: int = None  # iterations between the kept EMA snapshots (training-length study)
n_seeds: int = None  # training seeds per arm of the size and length studies
size_n_members: str = None  # comma-separated member-set sizes, e.g. "50,100,200"
factor_attack_steps: int = None  # steps the size and length studies attack
factor_n_noise: int = None  # noise draws per step in the size and length studies
aggregation_n_noise: str = None  # comma-separated draws per step compared, e.g. "1,4,16"
step_window: int = None  # neighbouring steps averaged in the aggregation study
lik_tolerances: str = None  # comma-separated ODE tolerances compared
lik_probe_counts: str = None  # comma-separated Hutchinson probe counts compared
factor_lik_max_images: int = None  # at most this many members and nonmembers (seeded random subsets) in the likelihood study
device: str = None
runs_dir: str = None

# %% tags=["hide-input"]
import miakit
from miakit.chapters import factors
from miakit.book import report

settings = miakit.core.config.from_namespace(globals())
clock = report.Stopwatch()
chapter = factors.run(settings)

# %% [markdown]
# (c2)=
# ## 1. The diffusion step (claim C2)
#
# Test AUC and TPR at 1% FPR of the loss attack against the step, for every family (the scores
# of [chapter 02](02_loss_attack.ipynb)). The table compares the best step strictly inside the
# process, chosen on validation data, with both ends of the process on the same test images
# (paired bootstrap): claim C2, one verdict over every family.
#
# The paper also says the attack is at chance at both ends. The ends are named by noise level:
# *t -> 0* is the least-noise end (the first step of each family's grid), *t -> T* the
# most-noise end (the last). At a step fixed in advance nothing is chosen on the data, so each
# end's AUC is measured on the whole split, validation and test parts together
# ({glue:text}`end_members:d` members and {glue:text}`end_nonmembers:d` nonmembers), and each
# end of each family gets its own verdict ("C2 t -> 0 (ddpm)" and so on). An equivalence over
# several families holds only when every one of their intervals falls inside the band, so a
# verdict over all {glue:text}`n_families:d` families would come out REPRODUCED with the
# product of their chances. At these sizes an end exactly at chance comes out REPRODUCED with
# probability about {glue:text}`end_power:.2f` at the deciding margin (all
# {glue:text}`n_families:d` families together: {glue:text}`end_power_all:.2f`) and
# {glue:text}`end_power_narrow:.2f` at the narrower one (normal approximation; the tests check
# it against simulated scores). On the test part alone it would be
# {glue:text}`end_power_test_part:.2f`.

# %% tags=["hide-input"]
chapter.metrics_figure();

# %% tags=["hide-input"]
chapter.step_table()

# %% [markdown]
# (c3)=
# ## 2. The size of the training set (claim C3)
#
# The {glue:text}`lead_family:s` target trained on member sets of different sizes, each with
# its own split into members and nonmembers, and each trained with {glue:text}`n_seeds:d` seeds.
# Set size and training length are entangled: at *equal epochs* a larger set also gets
# proportionally more optimizer steps, at *equal iterations* every set gets the chapter
# target's {glue:text}`iterations:d` steps (fewer passes over a larger set). Both are shown
# side by side, each relative to the chapter's own {glue:text}`n_members:d`-member target. One
# run per size and seed trains for the longer of the two budgets and keeps an EMA snapshot at
# the shorter one, which is bit-identical to a run stopped there. Dots are the seeds; bars are
# 95% intervals over images and seeds.

# %% tags=["hide-input"]
chapter.size_figure();

# %% tags=["hide-input"]
chapter.size_table()

# %% [markdown]
# (c4)=
# ## 3. The length of training (claim C4)
#
# The chapter's {glue:text}`lead_family:s` target, for each of its {glue:text}`n_seeds:d`
# training seeds, attacked at the EMA snapshots kept along its training. The EMA is
# bias-corrected (the initial, untrained weights carry no weight in it), and the first
# snapshot compared is the first at or after the EMA's time constant 1 / (1 - decay) =
# {glue:text}`ema_horizon:d` iterations, so an early snapshot is a shorter-trained model and not
# part untrained network. The dotted lines are the mean denoising loss of members and of
# nonmembers over the attacked steps (spread over the whole process, so close to the training
# objective): the gap between them is the generalisation gap the attack exploits.

# %% tags=["hide-input"]
chapter.length_figure();

# %% tags=["hide-input"]
chapter.length_table()

# %% [markdown]
# ## 4. Noise draws and step aggregation (ours)
#
# The paper scores an image with one noise draw at one step. Here the loss at the most
# vulnerable step of chapter 02 (chosen on validation) is averaged over more noise draws, and
# over a window of neighbouring steps, on the test images; the cost is the number of network
# queries per image. Left: the AUC with its 95% interval; right: the TPR at 1% FPR of the same
# settings.

# %% tags=["hide-input"]
chapter.noise_figure();

# %% tags=["hide-input"]
chapter.noise_table()

# %% [markdown]
# ## 5. Likelihood attack settings (ours)
#
# The likelihood attack at several ODE tolerances (one Hutchinson probe, as the paper) and with
# more probes per image (at this profile's tolerance), on the same images for every setting: at
# most {glue:text}`factor_lik_max_images:d` members and as many nonmembers, seeded random subsets of
# both parts of the split (the attack tunes nothing on them).

# %% tags=["hide-input"]
chapter.likelihood_figure();

# %% tags=["hide-input"]
chapter.likelihood_table()

# %% [markdown]
# ## The claims
#
# Each claim of the paper studied here, with the verdict computed from the runs above.

# %% tags=["hide-input"]
chapter.claims_table()

# %% tags=["remove-cell"]
report.glue_chapter(chapter, clock)

# %% [markdown]
# In this build: C2 {glue:text}`verdict_C2:s` (the ends at chance: {glue:text}`c2_ends:s`),
# C3 at equal epochs {glue:text}`verdict_C3_equal_epochs:s` and at equal iterations
# {glue:text}`verdict_C3_equal_iterations:s`, C4 {glue:text}`verdict_C4:s`. The studies took
# {glue:text}`seconds_size:.0f` s (training-set size, including training),
# {glue:text}`seconds_length:.0f` s (training length, including the extra seeds),
# {glue:text}`seconds_noise:.0f` s (noise draws) and {glue:text}`seconds_likelihood:.0f` s
# (likelihood settings); the whole chapter {glue:text}`seconds:.0f` s.
