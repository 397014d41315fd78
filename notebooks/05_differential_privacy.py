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
# # Differential privacy: the attacks against DP-SGD targets
#
# Hu & Pang (2023) train diffusion models with differentially private SGD and find that the
# attacks lose their power while the models lose sample quality. This chapter trains the same
# target at several privacy budgets epsilon with [opacus](https://opacus.ai): Poisson sampling,
# per-example gradient clipping, Gaussian noise calibrated by opacus' accountant (PRV) to the
# target epsilon at delta = {glue:text}`delta:g`, and DPDM's noise multiplicity (each example's
# loss averages {glue:text}`multiplicity:d` draws of step and noise before it is clipped, which
# improves utility at no privacy cost; the accountant counts each example once). Every target
# shares data, split, model and number of optimizer steps; epsilon = inf is the same budget
# trained without DP.
#
# Sample quality is measured offline as a Frechet distance between generated images and the
# real test nonmembers in the feature space of a small classifier trained on images that are
# neither members nor nonmembers. It is **not** Inception FID: its numbers only compare targets
# within this chapter. The per-example gradients that DP-SGD clips are checked against a
# per-example loop for every parameter in the test suite (`tests/test_privacy.py`): opacus'
# default mode silently gets the convolutions after diffusers' attention blocks wrong unless
# their inputs are made contiguous, which `miakit.privacy` does.

# %% tags=["remove-cell"]
# Colab only: install miakit and its dependencies (does nothing elsewhere).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "miakit[book] @ git+https://github.com/miakit/miakit"], check=True)

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | paper
dataset = None
resolution = None
n_nonmembers = None
model = None
dp_epsilons = None  # comma-separated privacy budgets; inf = not private
dp_families = None  # comma-separated families trained privately
dp_members = None  # member-set size of every target here
dp_iterations = None  # optimizer steps of every target
dp_batch_size = None  # expected batch size (Poisson sampling)
dp_delta = None
dp_max_grad_norm = None  # per-example clipping norm
dp_multiplicity = None  # draws of (step, noise) averaged in each example's loss (DPDM's K)
dp_physical_batch = None  # most examples per forward pass
dp_lik_images = None  # test members (and as many nonmembers) for the likelihood attack
utility_samples = None  # generated images per target for the Frechet distance
utility_steps = None  # sampler steps for them
factor_steps = None  # steps the loss attack evaluates
factor_noise = None  # noise draws per step
dp_speed_rounds = None  # interleaved rounds timing a DP-SGD step against an ordinary one
device = None
runs_dir = None

# %%
import miakit
from miakit import factors, plots, report, tradeoff

settings = miakit.config.from_namespace(globals())
clock = report.Stopwatch()
study = tradeoff.tradeoff_study(settings)

# %% [markdown]
# ## The trade-off
#
# Left: test AUC of the loss attack (step chosen on validation) and of the likelihood attack,
# with 95% bootstrap intervals, against epsilon. Right: the feature Frechet distance of each
# target's samples to real images (lower is better); the dotted line is the distance between
# two halves of the real nonmembers, the floor a perfect generator would reach.

# %%
plots.privacy_tradeoff(study.table(), study.fd_floor);

# %%
study.table()

# %%
report.show_notes(study.notes)

# %% [markdown]
# ## Samples
#
# Generated images of every target ({glue:text}`utility_steps:d` sampler steps).

# %%
plots.image_grids(study.sample_grids());

# %% [markdown]
# ## Claim C5
#
# The paper's claim has two halves, tested per family: at the smallest epsilon both attacks are
# near chance (their AUC intervals contain 0.5) while the non-private target of the same budget
# leaks clearly (its loss-attack AUC interval lies above 0.5; otherwise the comparison would
# prove nothing), and the private samples are worse (their Frechet distance exceeds the
# non-private one's, with a bootstrap interval above zero).

# %%
verdicts = study.verdicts()
factors.verdict_table(verdicts)

# %% [markdown]
# ## What a DP-SGD step costs (target P3)
#
# An ordinary training step against full DP-SGD steps through opacus on fresh copies of this
# chapter's model, with its batch of {glue:text}`p3_batch:d` images and noise multiplicity, timed
# side by side in interleaved rounds on this machine ({glue:text}`p3_threads:d` CPU threads).
# Each DP mode's per-sample gradients are first checked against a per-example loop; the mode
# without the contiguous-input fix is shown for reference only. Target P3: the mode miakit
# trains with costs at most twice an ordinary step.

# %%
dp_speed = tradeoff.dp_step_timing(settings)
dp_speed.table()

# %% [markdown]
# In this build a DP-SGD step cost {glue:text}`p3_ratio:.2f` times an ordinary one
# ({glue:text}`p3_ms_private:.0f` ms against {glue:text}`p3_ms_plain:.0f` ms); P3 met:
# {glue:text}`p3_met:s`. Most of the extra time goes into opacus' per-sample gradients of the
# convolutions (unfolding each input and one einsum per layer), then clipping and noise.

# %% tags=["remove-cell"]
report.glue_many(dp_speed.headline(), prefix="p3_")
report.glue("delta", settings.target.dp_delta)
report.glue("multiplicity", settings.target.dp_multiplicity)
report.glue("utility_steps", settings.privacy_study.utility_steps)
report.glue("classifier_accuracy", study.classifier_accuracy)
report.glue("fd_floor", study.fd_floor)
report.glue_many(factors.verdict_glue(verdicts))
report.glue("seconds", clock.elapsed())

# %% [markdown]
# The feature classifier recognises {glue:text}`classifier_accuracy:.3f` of the test nonmembers'
# classes. This chapter took {glue:text}`seconds:.0f` s to execute in this build.
