"""Interactive ROC figures served from the book itself: log-scale FPR, values on hover.

A ``RocFigure`` is the matplotlib figure (its PNG is what print, Colab and ``savefig`` get) with
an interactive twin drawn by plotly.js. In a notebook output it is one HTML block that holds the
PNG and a script: in the built book, where the page's ``content_root`` is known, the script
loads the book's own copy of plotly.js (``_static/plotly.min.js``, copied there by the build
from the ``plotly`` package: no CDN) and replaces the PNG by the interactive figure; anywhere
else (Colab, Jupyter, a browser without scripts) the PNG stays. The figure's data are written
by hand as plotly's JSON, so nothing but the build needs the ``plotly`` package.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
import uuid
from pathlib import Path

import numpy as np

SCRIPT = "plotly.min.js"  # under the book's static folder
MAX_POINTS = 600  # per curve: a ROC curve thinned on a log grid of FPR (the low-FPR end kept whole)


def install(static: Path) -> Path:
    """Copy plotly.js from the ``plotly`` package into the book's static folder ``static``."""
    try:
        import plotly
    except ImportError:
        raise RuntimeError("the book's interactive figures need plotly.js from the plotly package: "
                           "pip install plotly (it is in miakit's book extra)") from None
    source = Path(plotly.__file__).parent / "package_data" / SCRIPT
    if not source.exists():
        raise RuntimeError(f"the plotly package has no {SCRIPT} at {source}")
    static.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(source, static / SCRIPT))


def thin(fpr: np.ndarray, tpr: np.ndarray, floor: float, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """The curve's points, FPR and TPR clipped at ``floor`` (a log axis has no 0), at most about
    ``max_points``: every point below FPR 0.01, the rest on a log grid of FPR."""
    fpr, tpr = np.maximum(np.asarray(fpr, float), floor), np.maximum(np.asarray(tpr, float), floor)
    if len(fpr) > max_points:
        low = np.flatnonzero(fpr < 0.01)[: max_points // 2]
        grid = np.searchsorted(fpr, np.logspace(np.log10(max(floor, 0.01)), 0, max_points // 2))
        keep = np.unique(np.concatenate([low, np.clip(grid, 0, len(fpr) - 1), [0, len(fpr) - 1]]))
        fpr, tpr = fpr[keep], tpr[keep]
    return [float(f"{v:.5g}") for v in fpr], [float(f"{v:.5g}") for v in tpr]


def roc_spec(results_by_family: dict, ncol: int = 2) -> dict:
    """plotly's JSON (data, layout) of one log-log ROC panel per family, as ``plots.roc_grid``."""
    names = list(results_by_family)
    ncol = min(ncol, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    data, layout = [], {"grid": {"rows": nrow, "columns": ncol, "pattern": "independent"},
                        "height": 330 * nrow + 60, "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
                        "hovermode": "closest", "showlegend": True, "legend": {"font": {"size": 10}},
                        "annotations": []}
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    labels = list(dict.fromkeys(label for results in results_by_family.values() for label in results))
    for k, (family, results) in enumerate(results_by_family.items()):
        axis = "" if k == 0 else str(k + 1)
        floor = 0.5 / max(max(r.n_nonmembers for r in results.values()), 1)
        for label, r in results.items():
            x, y = thin(r.fpr, r.tpr, floor)
            data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "xaxis": "x" + axis, "yaxis": "y" + axis,
                         "name": label, "legendgroup": label, "showlegend": k == 0,
                         "line": {"color": colours[labels.index(label) % len(colours)], "width": 1.5},
                         "hovertemplate": f"{family}, {label} (AUC {r.auc:.3f})<br>FPR %{{x:.4f}}<br>TPR %{{y:.4f}}"
                                          "<extra></extra>"})
        data.append({"type": "scatter", "mode": "lines", "x": [floor, 1], "y": [floor, 1], "xaxis": "x" + axis,
                     "yaxis": "y" + axis, "name": "chance", "legendgroup": "chance", "showlegend": k == 0,
                     "line": {"color": "black", "dash": "dash", "width": 1}, "hoverinfo": "skip"})
        span = [float(np.log10(floor)), 0.02]
        layout["xaxis" + axis] = {"type": "log", "range": span, "title": {"text": "false positive rate"}}
        layout["yaxis" + axis] = {"type": "log", "range": span, "title": {"text": "true positive rate"}}
        layout["annotations"].append({"text": family, "showarrow": False, "xref": f"x{axis} domain",
                                      "yref": f"y{axis} domain", "x": 0.5, "y": 1.08, "font": {"size": 13}})
    return {"data": data, "layout": layout}


class RocFigure:
    """A ROC figure: ``figure`` (matplotlib; every attribute, such as ``savefig``, is its) shown
    as its PNG, and in the built book as the interactive plotly figure of ``spec``."""

    def __init__(self, figure, spec: dict):
        import matplotlib.pyplot as plt

        self.figure, self.spec = figure, spec
        plt.close(figure)  # shown once, through this object's display, not again by the inline backend

    def __getattr__(self, name):
        return getattr(self.figure, name)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()

    def html(self) -> str:
        """The PNG in a block, and the script that swaps it for the interactive figure where the
        book's plotly.js can be found."""
        png = base64.b64encode(self.png()).decode()
        target = f"miakit-roc-{uuid.uuid4().hex[:12]}"
        return (f'<div class="miakit-interactive" id="{target}"><img alt="ROC curves (log-log)" '
                f'style="max-width:100%" src="data:image/png;base64,{png}"></div>\n'
                "<script>(function () {\n"
                f"  var el = document.getElementById({json.dumps(target)}), spec = {json.dumps(self.spec)};\n"
                "  var root = document.documentElement.dataset.content_root;\n"
                "  if (!el || root === undefined) return;  // not in the built book: the PNG stays\n"
                "  function draw() { el.innerHTML = ''; window.Plotly.newPlot(el, spec.data, spec.layout,\n"
                "    {responsive: true, displaylogo: false}); }\n"
                "  if (window.Plotly) { draw(); return; }\n"
                f"  var src = root + '_static/{SCRIPT}', s = document.querySelector('script[data-miakit-plotly]');\n"
                "  if (!s) { s = document.createElement('script'); s.src = src; s.dataset.miakitPlotly = '1';\n"
                "    document.head.appendChild(s); }\n"
                "  s.addEventListener('load', draw);\n"
                "})();</script>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "image/png": base64.b64encode(self.png()).decode()}
