"""Figures: training curves, sample grids, log-log ROC curves, attack metrics against step, bits/dim."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from miakit.book import interactive
from miakit.evidence.metrics import AttackResult


def image_grid(images: torch.Tensor, ax=None, ncol: int = 8, title: str | None = None):
    """Show images in [-1, 1] ([N, C, H, W]) as one grid."""
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) / 2).numpy()
    n, c, h, w = x.shape
    ncol = min(ncol, n)
    nrow = int(np.ceil(n / ncol))
    grid = np.ones((nrow * (h + 1) - 1, ncol * (w + 1) - 1, c))
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def roc_loglog(results: dict[str, AttackResult], ax=None, title: str = "ROC (members positive)"):
    """ROC curves on log-log axes, where the low-FPR regime the paper studies is visible: drawn
    into ``ax``, or, without one, a figure of its own that the book shows interactively
    (``interactive.RocFigure``)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
        roc_loglog(results, ax, title)
        return interactive.RocFigure(fig, interactive.roc_spec({title: results}, ncol=1))
    floor = 1.0 / max(max(r.n_nonmembers for r in results.values()), 1)
    for label, r in results.items():
        ax.plot(np.maximum(r.fpr, floor / 2), np.maximum(r.tpr, floor / 2), label=f"{label} (AUC {r.auc:.3f})")
    grid = np.logspace(np.log10(floor / 2), 0, 50)
    ax.plot(grid, grid, "k--", lw=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(floor / 2, 1), ylim=(floor / 2, 1.05))
    ax.legend(fontsize=8, loc="lower right")
    return ax.figure


def _panels(n: int, width: float = 3.6, height: float = 3.4):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def training_curves(runs: dict, window: int = 50):
    """Moving-average training loss of several targets (name -> Run) on one axis."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, run in runs.items():
        losses = np.asarray(run.history["loss"], dtype=float)
        w = min(window, len(losses))
        ax.plot(np.arange(w - 1, len(losses)), np.convolve(losses, np.ones(w) / w, mode="valid"), label=name)
    ax.set(xlabel="iteration", ylabel=f"training loss (mean of {window})", yscale="log", title="Target training loss")
    ax.legend()
    return fig


def samples_by_family(real: torch.Tensor, generated: dict[str, torch.Tensor], ncol: int = 4):
    """Members next to each family's samples."""
    return image_grids({"members": real, **generated}, ncol, n=len(real))


def process_fraction(steps: np.ndarray, discrete: bool, n_steps: int) -> np.ndarray:
    """Steps as the fraction of the diffusion process, so discrete and continuous families align."""
    return steps / (n_steps - 1) if discrete else steps


def metrics_vs_step_by_family(studies: dict, runs: dict, level: float = 0.01):
    """AUC and TPR at ``level`` FPR against the diffusion step, every family on one axis per metric."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, study in studies.items():
        fam = runs[name].family
        x = process_fraction(study.steps, fam.discrete, fam.n_steps)
        left.plot(x, [r.auc for r in study.test], marker=".", label=name)
        right.plot(x, [r.tpr_at_fpr[level] for r in study.test], marker=".", label=name)
    left.axhline(0.5, color="k", ls="--", lw=0.8)
    right.axhline(level, color="k", ls="--", lw=0.8)
    left.set(xlabel="diffusion time (fraction of the process)", ylabel="AUC", title="AUC vs step (test split)")
    right.set(xlabel="diffusion time (fraction of the process)", ylabel=f"TPR @ {level * 100:g}% FPR",
              title=f"TPR at {level * 100:g}% FPR vs step (test split)")
    left.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roc_grid(results_by_family: dict[str, dict[str, AttackResult]], ncol: int = 2):
    """One log-log ROC panel per family, ``ncol`` panels a row; the book shows it interactively
    (``interactive.RocFigure``: the matplotlib figure, with its ``savefig``, and plotly's twin)."""
    n = len(results_by_family)
    ncol = min(ncol, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 4.8 * nrow), squeeze=False)
    for ax, (name, results) in zip(axes.flat, results_by_family.items()):
        roc_loglog(results, ax, title=name)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    return interactive.RocFigure(fig, interactive.roc_spec(results_by_family, ncol))


def hyperparameter_curves(curves):
    """One panel per attack: validation (dashed) and test (solid) AUC at every setting of its
    grid, one colour per family (``miakit.chapters.later_attacks.LaterAttacks.curves``); a table without an
    "AUC (test)" column (the benchmark regime scores its test part at the chosen setting only)
    draws the validation curve solid."""
    with_test = "AUC (test)" in curves
    attacks = list(dict.fromkeys(curves["attack"]))
    ncol = min(2, len(attacks))
    nrow = int(np.ceil(len(attacks) / ncol))
    legend_rows = int(np.ceil(2 * len(set(curves["family"])) / 4))  # a test and a validation line per family
    legend_inches = 0.15 + 0.2 * legend_rows
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.6 * ncol, 3.6 * nrow + legend_inches), squeeze=False)
    for ax in axes.flat[len(attacks):]:
        ax.set_axis_off()
    legend = {}
    for ax, attack in zip(axes.flat, attacks):
        part = curves[curves["attack"] == attack]
        for k, family in enumerate(dict.fromkeys(part["family"])):
            rows = part[part["family"] == family]
            x = np.arange(len(rows))
            if with_test:
                line, = ax.plot(x, rows["AUC (test)"], "o-", color=f"C{k}", ms=3)
                legend.setdefault(f"{family} (test)", line)
            line, = ax.plot(x, rows["AUC (validation)"], "--" if with_test else "o-", color=f"C{k}", lw=0.9, ms=3)
            legend.setdefault(f"{family} (validation)", line)
        labels = list(rows["setting"])
        step = max(1, int(np.ceil(len(labels) / 6)))  # at most 6 tick labels: they do not collide
        ax.set_xticks(np.arange(len(labels))[::step], labels[::step], rotation=30, ha="right", fontsize=7)
        ax.axhline(0.5, color="k", ls=":", lw=0.8)
        ax.set(ylabel="AUC", title=attack)
    # one legend for every panel, below them, where it covers no curve
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(4, len(legend)), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, legend_inches / (3.6 * nrow + legend_inches), 1, 1))
    return fig


def bpd_histograms(studies: dict):
    """Bits/dim of test members and nonmembers under each family's likelihood."""
    fig, axes = _panels(len(studies))
    for ax, (name, st) in zip(axes, studies.items()):
        bins = np.histogram_bin_edges(np.r_[st.bpd_members, st.bpd_nonmembers], bins=25)
        ax.hist(st.bpd_nonmembers, bins=bins, alpha=0.6, density=True, label="nonmembers")
        ax.hist(st.bpd_members, bins=bins, alpha=0.6, density=True, label="members")
        ax.set(xlabel="bits/dim", title=name)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def auc_against_factor(table, xlabel: str, title: str, xscale: str = "linear", loss_columns=None):
    """Test AUC with its 95% interval against a factor (the table's index); with
    ``loss_columns`` also those mean losses on a second axis (the generalisation gap)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    x = np.asarray(table.index, dtype=float)
    auc, lo, hi = (table[c].to_numpy(dtype=float) for c in ("AUC", "AUC low", "AUC high"))
    ax.plot(x, auc, marker="o", color="C0", label="loss attack AUC (test)")
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, label="95% bootstrap interval")
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set(xscale=xscale, xlabel=xlabel, ylabel="AUC", title=title)
    handles, labels = ax.get_legend_handles_labels()
    if loss_columns:
        right = ax.twinx()
        for colour, column in zip(("C2", "C3"), loss_columns):
            right.plot(x, table[column].to_numpy(dtype=float), color=colour, ls=":", marker=".", label=column)
        right.set_ylabel("mean denoising loss")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def auc_against_cost(table, cost: str, title: str, xscale: str = "log", tpr: str = "TPR@1%FPR"):
    """Each setting (a table row, numbered in the legend) as a point: test AUC with its interval,
    and the ``tpr`` column (a TPR at low FPR still moves when the AUC saturates), against its cost."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, row) in enumerate(table.iterrows()):
        x, auc = float(row[cost]), float(row["AUC"])
        err = [[auc - float(row["AUC low"])], [float(row["AUC high"]) - auc]]
        left.errorbar([x], [auc], yerr=err, fmt="o", capsize=3, color=f"C{i % 10}", label=f"{i + 1}: {label}")
        left.annotate(str(i + 1), (x, auc), textcoords="offset points", xytext=(4, 4), fontsize=8)
        right.plot([x], [float(row[tpr])], "o", color=f"C{i % 10}")
        right.annotate(str(i + 1), (x, float(row[tpr])), textcoords="offset points", xytext=(4, 4), fontsize=8)
    left.set(xscale=xscale, xlabel=cost, ylabel="AUC (test, 95% interval)", title=title)
    right.set(xscale=xscale, xlabel=cost, ylabel=f"{tpr} (test)", title=tpr)
    fig.legend(loc="lower center", ncol=2, fontsize=7, bbox_to_anchor=(0.5, -0.02 - 0.035 * ((len(table) + 1) // 2)))
    fig.tight_layout()
    return fig


def _seed_values(cell) -> list[float]:
    """Per-seed values stored in a table cell as space-separated numbers."""
    return [float(v) for v in str(cell).split()] if isinstance(cell, str) and cell.strip() else []


def privacy_tradeoff(table, fd_floor: float | None = None):
    """Per family, one position per matched arm (non-private, clipping only, then epsilon from
    large to small): every attack's AUC with its 95% interval over images and seeds, each seed a dot;
    and the feature Frechet distance of the samples, each seed a dot (lower is better)."""
    families = list(dict.fromkeys(table.index.get_level_values("family")))
    names = [c.removesuffix(" AUC per seed") for c in table.columns if c.endswith(" AUC per seed")]  # every attack run
    shifts = np.linspace(-0.1, 0.1, len(names)) if len(names) > 1 else [0.0]
    fig, axes = plt.subplots(len(families), 2, figsize=(11, 4 * len(families)), squeeze=False)
    for (left, right), family in zip(axes, families):
        part = table.xs(family, level="family")
        x = np.arange(len(part))
        for k, (attack, shift) in enumerate(zip(names, shifts)):
            auc = part[f"{attack} AUC"].to_numpy(dtype=float)
            lo, hi = part[f"{attack} AUC low"].to_numpy(dtype=float), part[f"{attack} AUC high"].to_numpy(dtype=float)
            left.errorbar(x + shift, auc, yerr=[auc - lo, hi - auc], fmt="o", capsize=3, color=f"C{k}",
                          label=f"{attack} attack (mean over seeds, 95% interval)")
            for xi, cell in zip(x, part[f"{attack} AUC per seed"]):
                seeds = _seed_values(cell)
                left.plot([xi + shift + 0.04] * len(seeds), seeds, ".", color=f"C{k}", alpha=0.5)
        for xi, cell in zip(x, part["feature FD per seed"]):
            seeds = _seed_values(cell)
            right.plot([xi] * len(seeds), seeds, ".", color="C2", alpha=0.6)
        right.plot(x, part["feature FD"].to_numpy(dtype=float), "o-", color="C2", label="feature FD (mean over seeds)")
        left.axhline(0.5, color="k", ls=":", lw=0.8)
        left.axhspan(0.4, 0.6, color="k", alpha=0.05, label="at chance (0.5 +/- 0.1)")
        if fd_floor is not None and np.isfinite(fd_floor):
            right.axhline(fd_floor, color="k", ls=":", lw=0.8, label="real vs real")
        for ax in (left, right):
            ax.set_xticks(x, list(part.index), rotation=20, ha="right", fontsize=8)
        left.set(ylabel="AUC (test)", title=f"{family}: attacks against DP-SGD")
        right.set(ylabel="Frechet distance (classifier features)", yscale="log",
                  title=f"{family}: sample quality (lower is better)")
        left.legend(fontsize=7)
        right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def defense_plane(table, lead: str, fd_floor: float | None = None, defenses: list[str] = ()):
    """Per family, the privacy-utility plane: the ``lead`` attack's AUC (left) and TPR at 1% FPR
    (right), each with its 95% interval over images and seeds, against the samples' feature
    Frechet distance (mean over seeds; the bar spans the seeds). Chapter 05's arms (no defense,
    clipping only, every epsilon) are joined as DP-SGD's curve; each defense is its own point."""
    families = list(dict.fromkeys(table.index.get_level_values("family")))
    fig, axes = plt.subplots(len(families), 2, figsize=(11, 4.6 * len(families)), squeeze=False)
    markers = "sDv^P*Xh<>"
    for (left, right), family in zip(axes, families):
        part = table.xs(family, level="family")
        for ax, metric, ylabel in ((left, "AUC", f"{lead} attack AUC (test)"),
                                   (right, "TPR@1%FPR", f"{lead} attack TPR at 1% FPR")):
            def point(arm, **style):
                row = part.loc[arm]
                x, y = float(row["feature FD"]), float(row[f"{lead} {metric}"])
                seeds = _seed_values(row["feature FD per seed"]) or [x]
                lo, hi = float(row[f"{lead} {metric} low"]), float(row[f"{lead} {metric} high"])
                ax.errorbar([x], [y], xerr=[[x - min(seeds)], [max(seeds) - x]], yerr=[[y - lo], [hi - y]],
                            capsize=3, **style)
                return x, y

            curve = [a for a in part.index if a not in defenses]
            xy = [point(a, fmt="o", color="k", alpha=0.8) for a in curve]
            ax.plot([p[0] for p in xy], [p[1] for p in xy], "-", color="k", lw=1, alpha=0.6,
                    label="DP-SGD (chapter 05's arms: no defense, clipping only, epsilon)")
            for (x, y), arm in zip(xy, curve):
                ax.annotate(arm, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="0.3")
            for k, arm in enumerate(a for a in part.index if a in defenses):
                point(arm, fmt=markers[k % len(markers)], color=f"C{k}", markersize=7, label=arm)
            if metric == "AUC":
                ax.axhspan(0.4, 0.6, color="k", alpha=0.05, label="at chance (0.5 +/- 0.1)")
            if fd_floor is not None and np.isfinite(fd_floor):
                ax.axvline(fd_floor, color="k", ls=":", lw=0.8, label="real vs real")
            ax.set(xscale="log", xlabel="feature Frechet distance (lower = better samples)", ylabel=ylabel,
                   title=f"{family}: {metric} against sample quality")
        left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def size_study(table):
    """Test AUC against member-set size, one line per budget (equal epochs, equal iterations):
    mean over seeds with its 95% interval (images and seeds), each seed a dot."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, budget in enumerate(dict.fromkeys(table.index.get_level_values("budget"))):
        part = table.xs(budget, level="budget").sort_index()
        x = part.index.to_numpy(dtype=float) * (1 + 0.03 * (2 * k - 1))
        auc = part["AUC"].to_numpy(dtype=float)
        lo, hi = part["AUC low"].to_numpy(dtype=float), part["AUC high"].to_numpy(dtype=float)
        ax.errorbar(x, auc, yerr=[auc - lo, hi - auc], fmt="o-", capsize=3, color=f"C{k}", label=budget)
        for column in (c for c in part.columns if c.startswith("AUC seed")):
            ax.plot(x, part[column].to_numpy(dtype=float), ".", color=f"C{k}", alpha=0.5)
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="members in the training set", ylabel="AUC (test)",
           title="Loss attack against training-set size (dots: seeds)")
    ax.set_xticks(sorted(set(table.index.get_level_values("members"))),
                  [str(v) for v in sorted(set(table.index.get_level_values("members")))])
    ax.set_xticks([], minor=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_grids(images: dict, ncol: int = 4, n: int = 16):
    """One grid of the first ``n`` images per label, side by side."""
    fig, axes = _panels(len(images), 3.2, 3.4)
    for ax, (label, x) in zip(axes, images.items()):
        image_grid(x[:n], ax, ncol, label)
    fig.tight_layout()
    return fig
