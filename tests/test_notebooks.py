"""Papermill smoke runs of every notebook and the strict, offline Jupyter Book build."""
import json
import math
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from miakit import book, report

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
# glued numbers each notebook must produce, finite
EXPECTED = {
    "01_targets": ["n_members", "n_nonmembers", "n_families", "train_seconds", "seconds"],
    "02_loss_attack": ["best_step", "best_auc", "optimistic_auc", "seconds"],
    "03_likelihood_attack": ["lead_auc", "lead_seconds_per_image", "lead_nfe", "p2_ratio", "p2_dbpd",
                             "p2_ms_ours", "p2_ms_paper", "p2_nfe_ours", "p2_nfe_paper", "seconds"],
    "04_factors": ["factor_steps", "seconds_step", "seconds_size", "seconds_length", "seconds_noise",
                   "seconds_likelihood", "seconds"],
    "05_differential_privacy": ["delta", "multiplicity", "classifier_accuracy", "fd_floor", "p3_ratio",
                                "p3_ms_private", "p3_ms_plain", "seconds"],
}


def cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_twin_is_in_sync_and_has_no_outputs(source):
    twin = source.with_suffix(".ipynb")
    assert twin.exists(), f"{twin.name} missing: run `make notebooks`"
    committed = nbformat.read(twin, as_version=4)
    assert cells(committed) == cells(jupytext.read(source)), f"{twin.name} drifted from {source.name}: run `make notebooks`"
    assert not any(c.get("outputs") for c in committed.cells if c.cell_type == "code"), f"{twin.name} has outputs"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_has_a_parameters_cell_starting_with_profile(source):
    nb = jupytext.read(source)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert tagged[0].source.splitlines()[0].startswith('profile = "cpu"')


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    stage = tmp_path_factory.mktemp("stage")
    runs = tmp_path_factory.mktemp("runs")
    book.main(["--profile", "smoke", "-p", f"runs_dir={json.dumps(str(runs))}", "--root", str(ROOT),
               "--stage", str(stage)])
    return stage


@pytest.mark.slow
def test_every_notebook_runs_and_glues_finite_metrics(built_book):
    for name, keys in EXPECTED.items():
        executed = built_book / "notebooks" / f"{name}.ipynb"
        nb = nbformat.read(executed, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name} raised: {errors[:1]}"
        glued = report.read_glued(executed)
        for key in keys:
            assert key in glued, f"{name} did not glue {key}"
            assert math.isfinite(report.glued_number(glued[key])), f"{name}: {key} = {glued[key]!r}"


@pytest.mark.slow
def test_book_html_has_every_chapter_with_figures(built_book):
    html = built_book / "_build" / "html"
    for page in ["book/intro", "book/reproduce", *(f"notebooks/{source.stem}" for source in SOURCES)]:
        assert (html / f"{page}.html").exists(), page
    loss_page = (html / "notebooks/02_loss_attack.html").read_text()
    assert loss_page.count("<img") >= 2  # metrics-vs-step and ROC figures
    assert (html / "notebooks/04_factors.html").read_text().count("<img") >= 5  # one figure per study
    assert (html / "notebooks/05_differential_privacy.html").read_text().count("<img") >= 2
    intro = (html / "book/intro.html").read_text()
    assert "AUC of" in intro and "colab.research.google.com" in loss_page
    timings = json.loads((built_book / "timings.json").read_text())
    assert set(timings["seconds"]) == set(EXPECTED)


@pytest.mark.slow
def test_unknown_notebook_parameter_stops_the_notebook(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter"):
        papermill.execute_notebook(str(ROOT / "notebooks/01_targets.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", "n_member": 5, "runs_dir": str(tmp_path)},
                                   kernel_name="python3", progress_bar=False, cwd=str(ROOT))


def test_book_runner_rejects_bad_profile_and_parameters():
    with pytest.raises(SystemExit, match="unknown profile"):
        book.check_parameters("gpu", {})
    with pytest.raises(SystemExit, match=r"unknown parameter\(s\) \['n_member'\]"):
        book.check_parameters("smoke", {"n_member": 5})
