"""What notebooks show: summary tables, glued numbers for the book's prose, and reading them back."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from miakit.training.train import Run

GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value, display: bool = False) -> None:
    """Glue ``value`` for the book's prose (myst-nb); a no-op where myst-nb is absent (Colab)."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=display)


def glue_many(values: dict, prefix: str = "") -> None:
    """Glue every entry of ``values`` under ``prefix + name``."""
    for name, value in values.items():
        glue(prefix + name, value)


def glue_estimate(name: str, estimate) -> None:
    """Glue an estimate as ``name``, ``name_low`` and ``name_high`` (its 95% interval)."""
    glue_many(estimate.named(name))


def glue_chapter(result, clock: "Stopwatch | None" = None) -> None:
    """A notebook's one glue call: its chapter result's values (``glue_values``), the outcome of
    each of its verdicts (``verdict_<claim>``) and, with ``clock``, the notebook's seconds. A
    chapter's verdicts are also kept for the claims page (``overview.remember``)."""
    from miakit.chapters import overview
    from miakit.evidence import claims

    verdicts = result.verdicts()
    if result.number:
        overview.remember(result.settings, result.number, verdicts)
    glue_many(result.glue_values())
    glue_many(claims.glue_values(verdicts))
    if clock is not None:
        glue("seconds", clock.elapsed())


def show_notes(notes: list[str], none: str = "Every measurement of this chapter was made.") -> None:
    """Print what a study could not measure, and why (or that nothing was skipped)."""
    print("\n".join(f"- {note}" for note in notes) if notes else none)


class Stopwatch:
    """Wall-clock seconds since creation (a notebook's run time, glued for the book)."""

    def __init__(self) -> None:
        self.began = time.perf_counter()

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.began, 1)


def read_glued(notebook: str | Path) -> dict[str, str]:
    """Every glued name -> its text/plain value, from an executed notebook."""
    nb = json.loads(Path(notebook).read_text())
    found = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                data = out.get("data", {})
                found[meta["name"]] = data.get(meta.get("mime_prefix", "") + "text/plain", "")
    return found


def glued_number(text: str) -> float:
    """A glued text/plain value as a float (NaN for 'nan')."""
    try:
        return float(text.strip().strip("'\""))
    except ValueError:
        return math.nan


def targets_table(runs: dict[str, Run]):
    """The targets side by side: one column per family."""
    import pandas as pd

    return pd.concat({name: target_summary(run)["value"] for name, run in runs.items()}, axis=1)


def member_images(runs: dict[str, Run], n: int):
    """The first ``n`` members (the same for every target of a study)."""
    run = next(iter(runs.values()))
    return run.images(run.split.members[:n])


def total_train_seconds(runs: dict[str, Run]) -> float:
    return float(sum(run.history["train_seconds_this_session"] for run in runs.values()))


def target_summary(run: Run):
    """One table describing a trained target: data, split sizes, model size and training."""
    import pandas as pd

    s, h, sp = run.settings, run.history, run.split
    rows = {
        "dataset": s.data.dataset,
        "image shape": "x".join(str(v) for v in run.dataset.images.shape[1:]),
        "images available": len(run.dataset),
        "members (train set)": len(sp.members),
        "nonmembers (held out)": len(sp.nonmembers),
        "members / nonmembers for choosing settings (validation)": f"{len(sp.members_val)} / {len(sp.nonmembers_val)}",
        "members / nonmembers for reporting (test)": f"{len(sp.members_test)} / {len(sp.nonmembers_test)}",
        "family": s.target.family,
        "UNet preset": f"{s.target.model} ({h['n_parameters']:,} parameters)",
        "iterations x batch": f"{s.target.iterations} x {s.target.batch_size}",
        "epochs over the members": f"{s.target.iterations * s.target.batch_size / len(sp.members):.0f}",
        "final training loss (mean of last 100)": (f"{sum(h['loss'][-100:]) / len(h['loss'][-100:]):.4f}"
                                                   if h["loss"] else "not trained"),
        "training time (s, last session)": f"{h['train_seconds_this_session']:.0f} on {h['device']}",
        "run folder (in runs_dir)": run.dir.name,
    }
    return pd.DataFrame({"value": rows})
