"""The run manifest of the book's appendix (miakit.book.manifest)."""
import subprocess

import pytest
import torch

from miakit.core import config
from miakit.book import manifest


def test_the_manifest_names_versions_commit_device_precision_and_seeds():
    settings = config.resolve("smoke", train_seed=7, n_seeds=3)
    frame = manifest.table(settings)
    value = frame["value"]
    assert value[("build", "profile")] == "smoke"
    assert value[("packages", "torch")] == torch.__version__
    assert value[("hardware", "device")] == "cpu" and value[("hardware", "precision")] == "float32"
    assert value[("seeds", "training seeds of the comparisons")] == "7, 8, 9"
    head = value[("build", "commit")].split()[0]
    assert len(head) == 40 and int(head, 16) >= 0


def test_the_commit_says_when_the_tree_differs_from_it(tmp_path):
    assert manifest.commit(tmp_path) == "unknown (not a git checkout)"
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("one")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = manifest.commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "f.txt").write_text("two")
    assert manifest.commit(tmp_path) == clean + " (plus uncommitted changes)"


def test_the_build_time_is_written_into_the_pages_once_the_html_exists(tmp_path):
    from miakit.book import manifest

    page = tmp_path / "book" / "intro.html"
    page.parent.mkdir()
    page.write_text('took <span class="miakit-build-minutes">(not recorded)</span> minutes; '
                    '<span class="miakit-build-parts">(not recorded)</span>.')
    other = tmp_path / "search.html"
    other.write_text("<p>no placeholder</p>")
    changed = manifest.stamp_build_time(tmp_path, {"pretraining": 600.0, "notebooks": 2700.0, "HTML": 300.0})
    assert changed == [page]
    assert page.read_text() == ('took <span class="miakit-build-minutes">60</span> minutes; <span class='
                                '"miakit-build-parts">60 minutes (pretraining 10.0, notebooks 45.0, HTML 5.0 minutes)</span>.')
    assert other.read_text() == "<p>no placeholder</p>"
    # as the book renders it: the placeholder's text holds `make book`, itself spans inside code; the
    # whole of it goes (the cpu book once read "took 88 book ) minutes")
    rendered = ('took <span class="miakit-build-minutes">(not recorded: not built by <code class="docutils literal">'
                '<span class="pre">make</span> <span class="pre">book</span></code>)</span> minutes; <span>kept</span>')
    page.write_text(rendered)
    manifest.stamp_build_time(tmp_path, {"pretraining": 600.0, "notebooks": 2700.0, "HTML": 300.0})
    assert page.read_text() == 'took <span class="miakit-build-minutes">60</span> minutes; <span>kept</span>'
    page.write_text('took <span class="miakit-build-minutes">(not recorded')
    with pytest.raises(ValueError, match="no closing"):
        manifest.stamp_build_time(tmp_path, {"HTML": 60.0})


def test_papermill_s_injected_parameters_are_folded_like_the_parameters_cell(tmp_path):
    import json

    from miakit.book import build
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters", "hide-cell"]}, "source": "profile = 'cpu'"},
                    {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "profile = 'smoke'"},
                    {"cell_type": "code", "metadata": {}, "source": "chapter.table()"}], "metadata": {}}
    (tmp_path / "02.ipynb").write_text(json.dumps(nb))
    assert build.fold_injected_parameters(tmp_path) == [tmp_path / "02.ipynb"]
    cells = json.loads((tmp_path / "02.ipynb").read_text())["cells"]
    assert [c["metadata"]["tags"] for c in cells] == [["parameters", "hide-cell"], ["injected-parameters", "hide-cell"], []]
    assert build.fold_injected_parameters(tmp_path) == []  # once is enough
