"""The interactive ROC figures (miakit.book.interactive): the PNG for print and Colab, plotly's
twin for the book, drawn from the same curves."""
import base64
import json
import re

import numpy as np

from miakit.book import interactive, plots
from miakit.evidence import metrics


def _results(seed=0, n_nonmembers=2000):
    rng = np.random.default_rng(seed)
    return {"loss": metrics.evaluate_split(rng.normal(1, 1, 200), rng.normal(0, 1, n_nonmembers)),
            "likelihood": metrics.evaluate_split(rng.normal(0.5, 1, 200), rng.normal(0, 1, n_nonmembers))}


def test_the_interactive_twin_has_log_axes_hover_values_and_the_same_curves():
    fig = plots.roc_grid({"ddpm": _results(), "smld": _results(1)})
    spec = fig.spec
    assert spec["layout"]["grid"] == {"rows": 1, "columns": 2, "pattern": "independent"}
    assert all(spec["layout"][f"{a}axis{k}"]["type"] == "log" for a in "xy" for k in ("", "2"))
    curves = [t for t in spec["data"] if t["name"] != "chance"]
    assert [(t["name"], t["xaxis"]) for t in curves] == [("loss", "x"), ("likelihood", "x"), ("loss", "x2"),
                                                          ("likelihood", "x2")]
    assert all("FPR %{x:.4f}" in t["hovertemplate"] and "TPR %{y:.4f}" in t["hovertemplate"] for t in curves)
    # the thinned curve is the ROC curve: each kept point is one of its points (up to 5 digits)
    r = _results()["loss"]
    x, y = interactive.thin(r.fpr, r.tpr, floor=0.5 / 2000)
    assert len(x) <= interactive.MAX_POINTS + 3 < len(r.fpr)
    exact = {(float(f"{a:.5g}"), float(f"{b:.5g}")) for a, b in zip(np.maximum(r.fpr, 0.5 / 2000),
                                                                      np.maximum(r.tpr, 0.5 / 2000))}
    assert set(zip(x, y)) <= exact
    low = r.fpr[(r.fpr > 0) & (r.fpr < 0.01)]
    assert set(np.round(low, 8)) <= set(np.round(x, 8))  # every point of the low-FPR end kept


def test_the_figure_is_its_png_outside_the_book_and_keeps_savefig(tmp_path):
    fig = plots.roc_loglog(_results(), title="one panel")
    bundle = fig._repr_mimebundle_()
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    html = bundle["text/html"]
    assert "data:image/png;base64," in html and "_static/plotly.min.js" in html
    assert "content_root" in html and "https://" not in html  # nothing fetched from outside the book
    spec = json.loads(re.search(r"spec = (\{.*?\});\n", html).group(1))
    assert spec == fig.spec
    fig.savefig(tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes().startswith(b"\x89PNG")


def test_install_copies_plotly_js_into_the_static_folder(tmp_path):
    copied = interactive.install(tmp_path / "_static")
    assert copied.name == "plotly.min.js" and copied.stat().st_size > 1_000_000
