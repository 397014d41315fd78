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
# # The loss-based attack at every diffusion step
#
# The loss attack of Hu & Pang (2023) asks the target for its own training loss on an image:
# noise the image to step *t*, ask the denoiser for the noise, and measure the error. Members
# were fitted during training, so their loss is lower. The member score is the negated loss
# (higher = member); we average it over a few noise draws per step where the profile says so.
#
# The paper evaluates every step and finds the attack strongest at intermediate steps, near
# chance at *t = 0* and at large *t*, where the noise swamps the image. This chapter measures
# the same curve on the four targets of [the previous chapter](01_targets.ipynb). Steps are
# shown as a fraction of the process so that the discrete families (1000 steps) and the
# continuous ones (t from 1e-5 to 1) line up.

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
n_members = None
n_nonmembers = None
families = None  # comma-separated; default: all four
model = None
iterations = None
attack_steps = None  # how many steps of the process the attack evaluates
n_noise = None  # noise draws per image and step
attack_seed = None
device = None
runs_dir = None

# %%
import miakit
from miakit import plots, report, studies

settings = miakit.config.from_namespace(globals())
clock = report.Stopwatch()
runs = miakit.train.ensure_all(settings)
loss = studies.loss_attack_studies(runs)

# %% [markdown]
# ## Attack performance against the diffusion step
#
# AUC and TPR at fixed FPR on the test part of the split, one point per evaluated step. Dotted
# lines mark chance (TPR = FPR). TPR at an FPR the test set cannot resolve (fewer than 1/FPR
# nonmembers) is left out rather than printed.

# %%
plots.metrics_vs_step_by_family(loss, runs);

# %% [markdown]
# ## ROC curves at the paper's steps
#
# Log-log ROC curves at the evaluated steps nearest to the paper's t = 0, 200, 500, 600, 800
# and 999 (of 1000). On log-log axes chance is the diagonal, and the low-FPR regime that matters
# for privacy is visible.

# %%
plots.roc_grid(studies.at_paper_steps_by_family(loss, runs));

# %% [markdown]
# ## The most vulnerable step
#
# For each family the step is chosen on the validation part (highest validation AUC) and
# reported on the test part. The last column picks the step on the reported data itself: it is
# optimistic and shown only for comparison with papers that report the best step. Columns named
# *paper* use the paper code's convention (nonmembers are the positive class and the loss is the
# score); the other columns are the standard member-positive numbers. NaN means the test set is
# too small to resolve that FPR.

# %%
studies.best_step_table(loss)

# %% tags=["remove-cell"]
lead = studies.lead_family(loss)
report.glue("lead_family", lead)
report.glue("best_step", loss[lead].summary()["best_step_val"])
report.glue("best_auc", loss[lead].summary()["result_val_chosen"].auc)
report.glue("best_tpr_1pct", loss[lead].summary()["result_val_chosen"].tpr_at_fpr[0.01])
report.glue("optimistic_auc", loss[lead].summary()["result_test_chosen"].auc)
report.glue("n_test_nonmembers", loss[lead].summary()["result_val_chosen"].n_nonmembers)
report.glue("auc_first_step", loss[lead].test[0].auc)
report.glue("auc_last_step", loss[lead].test[-1].auc)
report.glue("evaluations_per_image", len(loss[lead].steps) * settings.attack.n_noise)
report.glue("seconds", clock.elapsed())

# %% [markdown]
# For the {glue:text}`lead_family` target, at the step chosen on validation data, t = {glue:text}`best_step`, the
# loss attack reaches an AUC of {glue:text}`best_auc:.4f` and a TPR of
# {glue:text}`best_tpr_1pct:.3f` at 1% FPR on the test split ({glue:text}`n_test_nonmembers`
# test nonmembers); picking the step on the test data itself would have claimed an AUC of
# {glue:text}`optimistic_auc:.4f`. At the ends of the process the same attack reaches an AUC of
# {glue:text}`auc_first_step:.3f` at t = 0 and {glue:text}`auc_last_step:.3f` at the last step,
# where 0.5 is chance.
#
# ## At the paper's steps, every family
#
# The test metrics at the paper's ROC steps, the validation-chosen step and the optimistic one.

# %% tags=["hide-output"]
studies.headline_tables(loss, runs)
