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
# noise the image to step $t$, ask the denoiser for the noise, and measure the error. Members
# were fitted during training, so their loss is lower. The member score is the negated loss
# (higher = member); we average it over a few noise draws per step where the profile says so.
#
# The paper evaluates every step and finds the attack strongest at intermediate steps, near
# chance at $t = 0$ and at large $t$, where the noise swamps the image. This chapter measures
# the same curve on the target of [the previous chapter](01_targets.ipynb).

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
family = None
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
run = miakit.train.ensure(settings)
study = studies.loss_attack_study(run)
summary = study.summary()

# %% [markdown]
# ## Attack performance against the diffusion step
#
# AUC and TPR at fixed FPR on the test part of the split, one point per evaluated step. Dotted
# lines mark chance (TPR = FPR). TPR at an FPR the test set cannot resolve (fewer than 1/FPR
# nonmembers) is left out rather than printed.

# %%
plots.metrics_vs_step(study.steps, study.test, title="(test split)");

# %% [markdown]
# ## ROC curves at the paper's steps
#
# Log-log ROC curves at the evaluated steps nearest to the paper's t = 0, 200, 500, 600, 800
# and 999 (of 1000). On log-log axes chance is the diagonal, and the low-FPR regime that matters
# for privacy is visible.

# %%
plots.roc_loglog(study.at_paper_steps(run.family));

# %% [markdown]
# ## The most vulnerable step
#
# The step is chosen on the validation part (highest validation AUC) and reported on the test
# part. The row "best on test" picks the step on the reported data itself: it is optimistic and
# shown only for comparison with papers that report the best step. Columns named *paper* use the
# paper code's convention (nonmembers are the positive class and the loss is the score); the
# other columns are the standard member-positive numbers. NaN means the test set is too small to
# resolve that FPR.

# %%
study.headline_table(run.family)

# %% tags=["remove-cell"]
report.glue("best_step", summary["best_step_val"])
report.glue("best_auc", summary["result_val_chosen"].auc)
report.glue("best_tpr_1pct", summary["result_val_chosen"].tpr_at_fpr[0.01])
report.glue("best_tpr_10pct", summary["result_val_chosen"].tpr_at_fpr[0.1])
report.glue("optimistic_auc", summary["result_test_chosen"].auc)
report.glue("n_test_nonmembers", summary["result_val_chosen"].n_nonmembers)
report.glue("auc_first_step", study.test[0].auc)
report.glue("auc_last_step", study.test[-1].auc)
report.glue("last_step", study.steps[-1].item())
report.glue("evaluations_per_image", len(study.steps) * settings.attack.n_noise)
report.glue("seconds", clock.elapsed())

# %% [markdown]
# At the step chosen on validation data, t = {glue:text}`best_step`, the loss attack reaches an
# AUC of {glue:text}`best_auc:.4f` and a TPR of {glue:text}`best_tpr_1pct:.3f` at 1% FPR on the
# test split ({glue:text}`n_test_nonmembers` test nonmembers); picking the step on the test data
# itself would have claimed an AUC of {glue:text}`optimistic_auc:.4f`. At the ends of the process
# the same attack reaches an AUC of {glue:text}`auc_first_step:.3f` at t = 0 and
# {glue:text}`auc_last_step:.3f` at t = {glue:text}`last_step`, where 0.5 is chance.
#
# ## Every evaluated step
#
# The full table behind the figures (test split, with the validation AUC used for the choice).

# %% tags=["hide-output"]
study.per_step_table()
