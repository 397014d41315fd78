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
# # The claims at a glance
#
# Every claim of Hu & Pang (2023) that this book checks, and ours (marked "(ours)": the split
# check, and L1, the paper's C1 asked of every later attack of chapter 06), with the verdict this
# build computed, the numbers behind it and a link to the figure that supports it. The verdicts are recomputed
# here from the run store (the chapters trained and attacked everything; this page adds no
# training), by the rules of the claims layer (`miakit.claims`), written once:
#
# {glue:text}`rules:s`

# %% tags=["remove-cell"]
# Colab only: install miakit once (re-running is safe; does nothing elsewhere).
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("miakit") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "miakit[hub] @ git+https://github.com/miakit/miakit"], check=True)
    importlib.invalidate_caches()

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu | paper
dataset = None
resolution = None
n_members = None
n_nonmembers = None
families = None  # comma-separated; default: all four
model = None
iterations = None
n_seeds = None  # training seeds per arm of the size study and the privacy arms
device = None
runs_dir = None

# %%
import miakit
from miakit import claims, report, summary

settings = miakit.config.from_namespace(globals())
clock = report.Stopwatch()
verdicts = summary.all_verdicts(settings)
table = claims.table(verdicts)
table

# %% tags=["remove-cell"]
report.glue("claims_table", table, display=False)
report.glue("rules", claims.rules_text())
report.glue("profile_note", summary.profile_note(settings))
report.glue_many(summary.counts(verdicts), prefix="n_")
report.glue("seconds", clock.elapsed())

# %% [markdown]
# In this build ({glue:text}`profile_note:s`), {glue:text}`n_reproduced:d` verdicts came out
# REPRODUCED, {glue:text}`n_contradicted:d` CONTRADICTED and {glue:text}`n_undecided:d` UNDECIDED.
