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
lik_rtol = None  # ODE solver tolerances
lik_atol = None
lik_method = None  # torchdiffeq method
lik_probes = None  # Hutchinson probes per image
lik_max_images = None  # test members and test nonmembers evaluated (each at most this many)
device = None
runs_dir = None

# %%
import miakit
from miakit import plots, report, studies

settings = miakit.config.from_namespace(globals())
clock = report.Stopwatch()
runs = miakit.train.ensure_all(settings)
lik = studies.likelihood_studies(runs)

# %% [markdown]
# ## ROC curves
#
# Log-log ROC curves of the likelihood attack on the test split, one curve per target.

# %%
plots.roc_loglog(studies.likelihood_results(lik), title="Likelihood attack (members positive)");

# %% [markdown]
# ## Metrics in both conventions, likelihoods and cost
#
# TPR at each FPR in the standard convention (members positive) and, in columns named *paper*,
# in the paper code's convention; the AUC with a 95% bootstrap interval; the mean bits/dim of
# members and nonmembers; and the compute each image costs (ODE drift evaluations, each a
# network forward and one vector-Jacobian product, and wall-clock seconds on this machine).

# %%
studies.likelihood_table(lik)

# %% [markdown]
# ## Bits per dimension of members and nonmembers
#
# The attack works where the two distributions separate: members sit at lower bits/dim (higher
# likelihood) than images the model has not seen.

# %%
plots.bpd_histograms(lik);

# %% [markdown]
# ## Claim C1: does each attack beat chance on each family?
#
# Test-split AUC of the loss attack (at the step chosen on validation data) and of the
# likelihood attack, with 95% bootstrap intervals over members and nonmembers. An attack beats
# chance when its whole interval lies above 0.5.

# %%
studies.chance_table(studies.loss_attack_studies(runs), lik)

# %% tags=["remove-cell"]
lead = studies.lead_family(lik)
report.glue("lead_auc", lik[lead].result.auc)
report.glue("lead_seconds_per_image", lik[lead].seconds_per_image)
report.glue("lead_nfe", lik[lead].nfe_per_image)
report.glue("seconds", clock.elapsed())
