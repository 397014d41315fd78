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
# # Targets: the diffusion models under attack
#
# Hu & Pang (2023) attack diffusion models trained on small, privacy-sensitive image sets:
# 1000 FFHQ faces at 64x64 in the paper. A membership inference attack needs a *target* model
# and two disjoint sets of images from the same distribution: **members**, the images the target
# was trained on, and **nonmembers**, held out. This chapter trains the DDPM target of the
# chosen profile (see [how to reproduce](../book/reproduce.md)), and shows its training curve,
# samples, and the split that every later chapter attacks.
#
# The paper attacks four families of diffusion models: the discrete DDPM (variance preserving)
# and SMLD/NCSN (variance exploding), and their continuous-time counterparts, the VP and VE
# SDEs. All four are trained here on the same members, with the same UNet size and budget.
#
# Each of the two sets is cut once more: a *validation* part, on which attack settings such as
# the diffusion step are chosen, and a *test* part, on which results are reported.

# %% [markdown]
# ## The four families in equations
#
# Images are scaled to $[-1, 1]$ and have $d$ dimensions (pixels times channels). Every family
# noises an image $x_0$ to step $t$ by a Gaussian whose mean shrinks by $m_t$ and whose spread is
# $s_t$:
#
# $$
# q(x_t \mid x_0) = \mathcal{N}\left(m_t\, x_0,\; s_t^2 I\right), \qquad
# x_t = m_t\, x_0 + s_t\, \epsilon, \quad \epsilon \sim \mathcal{N}(0, I).
# $$
#
# | family | steps | $m_t$ | $s_t$ | the paper code's label of step $t$ |
# | --- | --- | --- | --- | --- |
# | DDPM | $t \in \{0, \dots, N-1\}$ | $\sqrt{\bar\alpha_t}$ | $\sqrt{1 - \bar\alpha_t}$ | $t$ |
# | SMLD | $t \in \{0, \dots, N-1\}$ | $1$ | $\sigma_t$ | $N - 1 - t$ |
# | VP SDE | $t \in [\varepsilon, 1]$ | $e^{\mu(t)}$ | $\sqrt{1 - e^{2 \mu(t)}}$ | $t$ |
# | VE SDE | $t \in [\varepsilon, 1]$ | $1$ | $\sigma(t)$ | $t$ |
#
# where DDPM's $\beta_s$ rise linearly from $\beta_{\min} / N$ to $\beta_{\max} / N$ and
#
# $$
# \begin{aligned}
# \bar\alpha_t &= \textstyle\prod_{s \le t} (1 - \beta_s), &
# \sigma_t &= \sigma_{\min} (\sigma_{\max} / \sigma_{\min})^{t / (N-1)}, \\
# \mu(t) &= -\tfrac14 t^2 (\beta_{\max} - \beta_{\min}) - \tfrac12 t\, \beta_{\min}, &
# \sigma(t) &= \sigma_{\min} (\sigma_{\max} / \sigma_{\min})^{t} .
# \end{aligned}
# $$
#
# The continuous families are the SDEs that the discrete ones discretise:
#
# $$
# \begin{aligned}
# \text{VP:}\quad \mathrm{d}x &= -\tfrac12 \beta(t)\, x\, \mathrm{d}t + \sqrt{\beta(t)}\, \mathrm{d}w,
# \qquad \beta(t) = \beta_{\min} + t (\beta_{\max} - \beta_{\min}), \\
# \text{VE:}\quad \mathrm{d}x &= \sqrt{\mathrm{d}\, \sigma(t)^2 / \mathrm{d}t}\; \mathrm{d}w .
# \end{aligned}
# $$
#
# The network is trained on the family's own denoising loss at a random step $t$ and draw
# $\epsilon$, averaged over the $d$ dimensions: the noise-prediction error for the
# variance-preserving families, and $\sigma^2$-weighted denoising score matching (the network
# $s_\theta$ estimates the score $\nabla_x \log p_t$) for the variance-exploding ones:
#
# $$
# \begin{aligned}
# \ell_t(x_0, \epsilon) &= \frac{1}{d} \left\lVert \epsilon_\theta(x_t, t) - \epsilon \right\rVert^2
# && \text{(DDPM, VP SDE)}, \\
# \ell_t(x_0, \epsilon) &= \frac{1}{d} \left\lVert s_t\, s_\theta(x_t, t) + \epsilon \right\rVert^2
# && \text{(SMLD, VE SDE)} .
# \end{aligned}
# $$
#
# The constants $N$, $\beta_{\min}$, $\beta_{\max}$, $\sigma_{\min}$, $\sigma_{\max}$ and
# $\varepsilon$ are score_sde's, set in `miakit.diffusion`.
#
# **Step labels.** Here every family counts its steps from the least noise: step 0 is the cleanest
# and the noise grows with $t$. The paper's code (built on score_sde) does the same for DDPM and
# the two SDEs, but labels SMLD's noise levels from the largest: its label $k$ is
# $\sigma_{\max} (\sigma_{\min} / \sigma_{\max})^{k / (N-1)}$ (score_sde flips its array of
# sigmas for SMLD), so **SMLD's paper-code step label $k$ is our noise-ascending step $N-1-k$**,
# and its label 0 is our last step. Every other family's labels are our steps. The later
# chapters keep our steps and, on SMLD's rows, show the paper's label beside them
# (`t = 50 (paper's SMLD label 949)`); the paper's ROC steps are read as its labels
# (`miakit.diffusion.Family.paper_label`).

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
dataset: str = None  # digits | fashion-mnist | cifar10 | hf:<hub id or folder> | folder:<path to FFHQ or retina images>
resolution: int = None
n_members: int = None
n_nonmembers: int = None
families: str = None  # comma-separated, e.g. "ddpm,vpsde"; default "all": every registered family
model: str = None  # UNet preset: tiny | small | medium | paper
iterations: int = None
batch_size: int = None
lr: float = None
n_samples: int = None
sample_steps: int = None
device: str = None  # auto | cpu | cuda
runs_dir: str = None  # a folder, or drive:<folder> on Colab (kept on Google Drive)

# %% tags=["hide-input"]
import miakit
from miakit.book import report
from miakit.chapters import targets

settings = miakit.core.config.from_namespace(globals())
clock = report.Stopwatch()
chapter = targets.run(settings)
chapter.table()

# %% [markdown]
# ## Training
#
# The denoising loss per batch over training. The attack exploits what this curve cannot show:
# whether the loss on the members falls further than the loss on images the model has never
# seen ([chapter 04](04_factors.ipynb) measures that gap along training).

# %% tags=["hide-input"]
chapter.curves_figure();

# %% [markdown]
# ## Samples
#
# Members (left) next to images generated by each target with its family's sampler (ancestral
# sampling for the discrete families, Euler-Maruyama on the reverse SDE for the continuous ones).

# %% tags=["hide-input"]
chapter.samples_figure();

# %% tags=["remove-cell"]
report.glue_chapter(chapter, clock)
