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
# continuous ones (t from 1e-5 to 1) line up; for every family 0 is the least noise (the paper's
# code labels SMLD's steps the other way round: on SMLD's rows its label follows ours, see
# [chapter 01](01_targets.ipynb)).
#
# These targets memorise hard on purpose (the paper's setting at a CPU's scale), so the attack
# reads an AUC near 1 on several of them. The same attack on targets where attacks do not
# saturate, beside the later attacks it is the baseline of, is in
# [chapter 06's benchmark regime](06_later_attacks.ipynb).

# %% [markdown]
# ## The attack in equations
#
# With the family's training loss $\ell_t$ of [chapter 01](01_targets.ipynb), the member score of
# an image $x_0$ at step $t$ is its negated loss, averaged over $K$ noise draws (the profile's
# `n_noise`; each image's draws are fixed by the seed and the image):
#
# $$
# \mathrm{score}_t(x_0) = -\frac{1}{K} \sum_{k=1}^{K} \ell_t(x_0, \epsilon_k),
# \qquad \epsilon_k \sim \mathcal{N}(0, I).
# $$
#
# An attack flags $x_0$ as a member when its score exceeds a threshold $\tau$. Over the test
# members $M$ and nonmembers $N$, each threshold gives a true- and a false-positive rate, and the
# reported TPR at a false-positive rate $\alpha$ is the best the attack reaches without exceeding
# $\alpha$:
#
# $$
# \begin{aligned}
# \mathrm{TPR}(\tau) &= \frac{\#\{x \in M : \mathrm{score}(x) \ge \tau\}}{|M|}, \qquad
# \mathrm{FPR}(\tau) = \frac{\#\{x \in N : \mathrm{score}(x) \ge \tau\}}{|N|}, \\
# \mathrm{TPR}@\alpha &= \max_{\tau :\, \mathrm{FPR}(\tau) \le \alpha} \mathrm{TPR}(\tau).
# \end{aligned}
# $$
#
# It is reported only when the test set can resolve $\alpha$, that is when $|N|\, \alpha \ge 1$.
# The paper's code uses the other convention: nonmembers are the positive class and the loss is
# the score, so its "TPR at $\alpha$" is the share of nonmembers caught while at most a share
# $\alpha$ of members is flagged (the roles of $M$ and $N$ swapped and $\mathrm{score}$ negated;
# it needs $|M|\, \alpha \ge 1$). The AUC is the probability that a random member outscores a
# random nonmember, ties counted half:
# $\mathrm{AUC} = P(\mathrm{score}(m) > \mathrm{score}(n)) + \tfrac12 P(\mathrm{score}(m) = \mathrm{score}(n))$.
#
# The step is chosen on the validation part, $\hat t = \arg\max_t \mathrm{AUC}_{\mathrm{val}}(t)$,
# and the attack is reported at $\hat t$ on the test part.

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
attack_steps: int = None  # how many steps of the process the attack evaluates
n_noise: int = None  # noise draws per image and step
attack_seed: int = None
device: str = None
runs_dir: str = None

# %% tags=["hide-input"]
import miakit
from miakit.book import report
from miakit.chapters import loss_and_likelihood

settings = miakit.core.config.from_namespace(globals())
clock = report.Stopwatch()
chapter = loss_and_likelihood.run_loss_chapter(settings)

# %% [markdown]
# ## Attack performance against the diffusion step
#
# AUC and TPR at fixed FPR on the test part of the split, one point per evaluated step. Dotted
# lines mark chance (TPR = FPR). TPR at an FPR the test set cannot resolve (fewer than 1/FPR
# nonmembers) is left out rather than printed.

# %% tags=["hide-input"]
chapter.metrics_figure();

# %% [markdown]
# ## ROC curves at the paper's steps
#
# Log-log ROC curves at the evaluated steps nearest to the paper's t = 0, 200, 500, 600, 800
# and 999 (of 1000). On log-log axes chance is the diagonal, and the low-FPR regime that matters
# for privacy is visible. These are the paper code's step labels: for SMLD, whose labels count
# from the largest noise, they sit at our steps 999 - t (the paper's SMLD t = 200 is our
# t = 799), and each SMLD curve names both.

# %% tags=["hide-input"]
chapter.paper_steps_figure()

# %% [markdown]
# ## The most vulnerable step
#
# For each family the step is chosen on the validation part (highest validation AUC) and
# reported on the test part. The last column picks the step on the reported data itself: it is
# optimistic and shown only for comparison with papers that report the best step. Columns named
# *paper* use the paper code's convention (nonmembers are the positive class and the loss is the
# score); the other columns are the standard member-positive numbers. A TPR at an FPR below one
# over the number of test negatives (nonmembers; members in the paper's convention) is not
# measurable, and its column is left out.

# %% tags=["hide-input"]
chapter.best_step_table()

# %% [markdown]
# (blind)=
# ## A blind baseline: is the split IID?
#
# An attack's AUC measures membership only if members and nonmembers are drawn from the same
# distribution. Two *blind* attacks (Das et al. 2024) test that without ever querying a model:
# a logistic regression on pixel statistics (intensity histogram, spread, edge energy, a 4x4
# thumbnail) and the distance to the nearest known member against the nearest known nonmember.
# Each is fitted on the validation part and scores the test part, and the other way round
# (cross-fitting), so every image is scored by a model that never saw it. On an IID split both
# sit at chance; if they did not, the attacks' numbers would mix membership with a difference
# between the two image sets. The verdict uses the equivalence rule of the claims layer: the
# whole AUC interval must lie inside 0.5 +/- {glue:text}`chance_delta:.1f`.

# %% tags=["hide-input"]
chapter.blind_table()

# %% tags=["hide-input"]
chapter.chosen_roc_figure()

# %% tags=["hide-input"]
chapter.claims_table()

# %% tags=["remove-cell"]
report.glue_chapter(chapter, clock)

# %% [markdown]
# For the {glue:text}`lead_family` target, at the step chosen on validation data, {glue:text}`best_step_label:s`, the
# loss attack reaches an AUC of {glue:text}`best_auc:.4f` (95% interval
# {glue:text}`best_auc_low:.3f` to {glue:text}`best_auc_high:.3f`) and a TPR of
# {glue:text}`best_tpr_1pct:.3f` at 1% FPR ({glue:text}`best_tpr_1pct_low:.3f` to
# {glue:text}`best_tpr_1pct_high:.3f`) on the test split ({glue:text}`n_test_nonmembers`
# test nonmembers); picking the step on the test data itself would have claimed an AUC of
# {glue:text}`optimistic_auc:.4f`. At the ends of the process the same attack reaches an AUC of
# {glue:text}`auc_first_step:.3f` at t = 0 and {glue:text}`auc_last_step:.3f` at the last step,
# where 0.5 is chance. The blind baselines, which see no model, reach
# {glue:text}`blind_auc_pixel_statistics:.3f` and {glue:text}`blind_auc_nearest_neighbour:.3f`;
# the split check is {glue:text}`verdict_IID_split:s`.
#
# ## At the paper's steps, every family
#
# The test metrics at the paper's ROC steps (for SMLD at the paper's labels, mirrored into our
# steps), the validation-chosen step and the optimistic one. Every family's per-image scores lie
# beside its run as CSV (see [how to reproduce](../book/reproduce.md)). As above, a TPR at an FPR
# below one over the number of test negatives is not measurable and its column is left out.

# %% tags=["hide-output"]
chapter.headline_tables()
