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
# # The likelihood-based attack
#
# A diffusion model defines an exact likelihood through its probability-flow ODE: the
# deterministic process that moves every image along the same marginals as the noising process.
# Integrating the ODE from the image to the prior, and the divergence of its drift along the way,
# gives log p(x) (Song et al. 2021). Hu & Pang (2023) use it as a membership score: members are
# more likely under the model. The member score is log p itself (higher = member).
#
# As in the paper's code, the divergence is estimated with one Hutchinson probe per image, kept
# fixed along the trajectory; the ODE is solved by an adaptive Runge-Kutta method (dopri5,
# torchdiffeq) for a whole batch of images at once, at the profile's tolerance. Likelihoods are
# reported in bits per dimension with the paper code's offset for data in [-1, 1].

# %% [markdown]
# ## The likelihood in equations
#
# Every family's noising process of [chapter 01](01_targets.ipynb) has a probability-flow ODE that
# carries each image along the same marginals $p_t$ without noise. With the SDE's drift $f$ and
# diffusion $g$, and the score $\nabla_x \log p_t$ replaced by the network's $s_\theta$:
#
# $$
# \frac{\mathrm{d}x}{\mathrm{d}t} = \tilde f_\theta(x, t) = f(x, t) - \tfrac12 g(t)^2\, s_\theta(x, t).
# $$
#
# The instantaneous change of variables turns the trajectory from $x_0$ (at $t = \varepsilon$) to
# $x_1$ into an exact log-likelihood under the model, with $p_1$ the family's Gaussian prior
# ($\mathcal{N}(0, I)$ for the variance-preserving families, $\mathcal{N}(0, \sigma_{\max}^2 I)$ for
# the variance-exploding ones):
#
# $$
# \log p_0(x_0) = \log p_1(x_1) + \int_{\varepsilon}^{1} \nabla \cdot \tilde f_\theta(x_t, t)\, \mathrm{d}t .
# $$
#
# The divergence of a $d$-dimensional network is too dear to compute exactly, so it is estimated
# by Hutchinson's trace estimator with one Rademacher probe $v$ (entries $\pm 1$) per image, kept
# fixed along the trajectory; the vector-Jacobian product comes from one backward pass:
#
# $$
# \nabla \cdot \tilde f_\theta(x, t) = \operatorname{tr}\left(\frac{\partial \tilde f_\theta}{\partial x}\right)
# \approx v^\top \frac{\partial \tilde f_\theta(x, t)}{\partial x}\, v,
# \qquad \mathbb{E}\left[v v^\top\right] = I .
# $$
#
# Likelihoods are reported in bits per dimension. For 8-bit images scaled to $[-1, 1]$, 256
# levels span a range of 2, so a density converts to a probability mass per bin with the offset
# $\log_2(256 / 2) = 7$ bits:
#
# $$
# \mathrm{bpd}(x_0) = -\frac{\log p_0(x_0)}{d \ln 2} + 7,
# \qquad \mathrm{score}(x_0) = \log p_0(x_0) \quad \text{(higher = member)} .
# $$

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
lik_rtol: float = None  # ODE solver tolerances
lik_atol: float = None
lik_method: str = None  # torchdiffeq method
lik_probes: int = None  # Hutchinson probes per image
lik_max_images: int = None  # at most this many members and this many nonmembers (seeded random subsets of both parts)
speed_images: int = None  # images in the side-by-side timing against the loop of the paper
speed_batch: int = None  # images in the miakit throughput batch (0 skips it)
device: str = None
runs_dir: str = None

# %% tags=["hide-input"]
import miakit
from miakit.book import report
from miakit.chapters import loss_and_likelihood

settings = miakit.core.config.from_namespace(globals())
clock = report.Stopwatch()
chapter = loss_and_likelihood.run_likelihood_chapter(settings)

# %% [markdown]
# ## ROC curves
#
# Log-log ROC curves of the likelihood attack on the test split, one curve per target.

# %% tags=["hide-input"]
chapter.roc_figure()

# %% [markdown]
# ## Metrics in both conventions, likelihoods and cost
#
# TPR at each FPR in the standard convention (members positive) and, in columns named *paper*,
# in the paper code's convention; the AUC and the TPR at 1% FPR with 95% bootstrap intervals;
# how many test images were scored (when a part holds more than `lik_max_images`, a seeded
# random subset of it, never its first images); the mean bits/dim of members and nonmembers;
# and the compute each image costs (ODE drift evaluations, each a network forward and one
# vector-Jacobian product, and wall-clock seconds on this machine).

# %% tags=["hide-input"]
chapter.table()

# %% [markdown]
# ## Bits per dimension of members and nonmembers
#
# The attack works where the two distributions separate, with members at lower bits/dim (higher
# likelihood) than images the model has not seen. In this build the test members' mean bits/dim
# lies below the nonmembers' on {glue:text}`n_lower_bpd:d` of {glue:text}`n_families:d` families.
# On the {glue:text}`lead_family:s` target the attack scored {glue:text}`lead_test_members:d`
# members and {glue:text}`lead_test_nonmembers:d` nonmembers at {glue:text}`lead_seconds_per_image:.3f` s
# per image on this machine.

# %% tags=["hide-input"]
chapter.bpd_figure();

# %% [markdown]
# (c1)=
# ## Claim C1: does each attack beat chance on each family?
#
# Test-split AUC and TPR at 1% FPR of the loss attack (at the step chosen on validation data)
# and of the likelihood attack, with 95% bootstrap intervals over members and nonmembers, beside
# the blind baselines of [chapter 02](02_loss_attack.ipynb), which never query a model and show
# what an attack reaches on this split without one. An attack beats chance when its AUC lies
# above the chance band 0.5 +/- {glue:text}`chance_delta:.1f`: one threshold, 0.5 + {glue:text}`chance_delta:.1f`.
# The verdict is REPRODUCED when the whole 95% interval lies above it, CONTRADICTED when the whole
# interval lies below it, and UNDECIDED otherwise (the table says how many test images would
# decide it, where more images could).

# %% tags=["hide-input"]
chapter.attack_table()

# %% tags=["hide-input"]
chapter.claims_table()

# %% [markdown]
# ## How fast is the batched likelihood? (target P2)
#
# The paper's code solves the ODE with scipy's RK45 at rtol = atol = 1e-5, one image at a time,
# copying the state between numpy and torch at every evaluation and running the network twice
# per evaluation (once for the drift, once more for the divergence). miakit solves a whole
# batch in one torchdiffeq call, with drift and divergence from one forward and one backward
# pass. Here both run now, side by side on this machine, on the same images of the
# {glue:text}`lead_family:s` target with the same Hutchinson probe per image; rows marked
# *batch* time miakit on a larger batch (throughput only). The agreement columns compare bits/dim
# with the paper loop's. Target P2: at least 20 times the paper loop's images per second at a
# mean |d bits/dim| of at most 0.01.

# %% tags=["hide-input"]
chapter.timing_table()

# %% [markdown]
# At this profile's tolerance miakit ran {glue:text}`p2_ratio:.1f` times as many images per second
# as the paper loop ({glue:text}`p2_threads:d` CPU threads), at a mean |d bits/dim| of
# {glue:text}`p2_dbpd:.4f`; P2 met: {glue:text}`p2_met:s`. Each of its ODE evaluations cost
# {glue:text}`p2_ms_ours:.1f` ms per image against {glue:text}`p2_ms_paper:.1f` ms in the paper loop,
# and it needed {glue:text}`p2_nfe_ours:.0f` evaluations per image against
# {glue:text}`p2_nfe_paper:.0f`. `benchmarks/likelihood.py` runs the same comparison with more
# images and solver settings.

# %% tags=["remove-cell"]
report.glue_chapter(chapter, clock)
