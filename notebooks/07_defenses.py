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
# # Defenses besides DP-SGD
#
# Chapter 05 shows DP-SGD stopping the attacks at a large cost in sample quality. The paper
# leaves other defenses to future work; practitioners deploy several. This chapter puts the
# common ones on the same privacy-utility plane, each trained on chapter 05's recipe (the same
# {glue:text}`dp_n_members:d` members of the same split, the same DP-SGD loop with neither
# clipping nor noise, {glue:text}`dp_iterations:d` steps, the same {glue:text}`n_seeds:d`
# training seeds), attacked by the same attacks and measured by the same sample quality:
#
# - **early stopping**: the no-defense training, released where a trainer stops by the usual
#   patience rule ({glue:text}`defense_patience:d` evaluations without improvement) on the
#   diffusion loss of {glue:text}`defense_held_out:d` held-out images that no attack scores,
#   evaluated {glue:text}`defense_evaluations:d` times; it releases the best weights it saw;
# - **data augmentation**: left-right flips and integer shifts of each training image;
# - **weight decay** (AdamW's decoupled decay) at two strengths;
# - **a smaller UNet**;
# - **knowledge distillation**: a student trained only on images its teacher (the no-defense
#   target of the same seed) generated, never on a member (DistillMD, 2024);
# - DP-SGD at {glue:text}`dp_reference:s` from chapter 05 as the reference point, and chapter
#   05's other arms as DP-SGD's curve.
#
# No defense's hyperparameter is chosen on membership labels: each is fixed beforehand (this
# profile's values, in the parameters below), and early stopping sees only held-out images.
#
# **The claims, written before any number of this chapter was seen.** For each defense and
# family: *the defense lowers the lead attack's AUC by more than {glue:text}`reduction:.2g`
# against no defense (the paired difference's whole 95% interval lies above it), at a
# sample-quality cost below DP-SGD's at {glue:text}`dp_reference:s` (DP-SGD's feature Frechet
# distance minus the defense's lies above 0)*. Both halves must hold for REPRODUCED; either
# failing outright is CONTRADICTED; otherwise the data cannot decide. The rule can come out every
# way at the cpu profile's sizes (50 + 500 test images, 3 seeds, paired): on simulated scores
# (`tests/test_claims.py`) a defense that changes nothing is CONTRADICTED at least 80% of the
# time, one that takes off exactly 0.1 is almost never called a success, and one that takes off
# 0.25 is REPRODUCED at least 90% of the time.

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
n_nonmembers: int = None
model: str = None
n_seeds: int = None  # training seeds per arm
dp_epsilons: str = None  # chapter 05's budgets (its arms draw DP-SGD's curve)
dp_families: str = None  # families of chapter 05 (and of this chapter)
dp_n_members: int = None  # member-set size of every target here
dp_iterations: int = None  # optimizer steps of every target
dp_batch_size: int = None  # expected batch size (Poisson sampling)
dp_lik_max_images: int = None  # members (and at most as many nonmembers) for the likelihood attack
dp_attacks: str = None  # comma-separated registered attacks run on every target; the first is the claims' lead attack
utility_samples: int = None  # generated images per target for the Frechet distance
utility_steps: int = None  # sampler steps for them (and for the teacher's images)
factor_attack_steps: int = None  # steps the tuned attacks evaluate
factor_n_noise: int = None  # noise draws per step
defense_shift: int = None  # the augmentation arm's largest shift in pixels (with left-right flips)
defense_weight_decays: str = None  # comma-separated AdamW weight decays, one arm each
defense_model: str = None  # the smaller-model arm's UNet preset
defense_distill_samples: int = None  # images the teacher generates for its student; 0: no distillation arm
defense_patience: int = None  # early stopping: evaluations without improvement before it stops
defense_evaluations: int = None  # early stopping: validation-loss evaluations over the training
defense_held_out: int = None  # early stopping: held-out images it evaluates on
defense_dp_epsilon: float = None  # chapter 05's DP-SGD arm the defenses are compared with
device: str = None
runs_dir: str = None

# %% tags=["hide-input"]
import miakit
from miakit.book import report
from miakit.chapters import defenses

settings = miakit.core.config.from_namespace(globals())
clock = report.Stopwatch()
chapter = defenses.run(settings)

# %% [markdown]
# (plane)=
# ## The privacy-utility plane
#
# Each point is an arm: the lead attack's AUC (left) and TPR at 1% FPR (right), mean over seeds
# with the 95% interval over images and seeds, against the feature Frechet distance of its
# samples to real images (mean over seeds; the horizontal bar spans the seeds; lower is
# better). The black line joins chapter 05's arms, from no defense through clipping only to the
# smallest epsilon: DP-SGD's trade-off. A defense below and to the left of that line buys more
# privacy per unit of sample quality than DP-SGD does.

# %% tags=["hide-input"]
chapter.figure();

# %% [markdown]
# Every attack on every arm: the AUC (mean over seeds, 95% interval over images and seeds, and
# each seed's), and the TPR at 1% FPR.

# %% tags=["hide-input"]
chapter.table()

# %% [markdown]
# Every arm's sample quality (feature Frechet distance to real images: mean and per seed), its
# training time, and how its hyperparameters were chosen.

# %% tags=["hide-input"]
chapter.quality_table()

# %% [markdown]
# ## Where early stopping stopped
#
# The validation loss of the held-out images at every evaluation, and where the patience rule
# stopped (or that it ran to the end of the training).

# %% tags=["hide-input"]
chapter.stops_table()

# %% [markdown]
# ## The claims
#
# Of {glue:text}`n_defenses:d` defenses per family, {glue:text}`n_reproduced:d` claims came out
# REPRODUCED, {glue:text}`n_contradicted:d` CONTRADICTED and {glue:text}`n_undecided:d`
# UNDECIDED in this build.

# %% tags=["hide-input"]
chapter.claims_table()

# %% tags=["remove-cell"]
report.glue_chapter(chapter, clock)

# %% [markdown]
# This chapter took {glue:text}`seconds:.0f` s to execute in this build (chapter 05's arms were
# read from the run store).
