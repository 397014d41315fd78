"""The prose states the profiles as miakit.core.config defines them (no number typed twice may drift)."""
import json
from pathlib import Path

import pytest

from miakit.core import config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["cpu", "gpu", "paper"])
def test_reproduce_page_profile_row_matches_config(profile):
    rows = [line for line in (ROOT / "book/reproduce.md").read_text().splitlines()
            if line.startswith(f"| `{profile}`") and " members" in line]  # the profiles table's row
    assert len(rows) == 1
    p = config.PROFILES[profile]
    for text in (f"{p['resolution']}x{p['resolution']}", f"{p['n_members']} members",
                 f"{p['n_nonmembers']} nonmembers"):
        assert text in rows[0], f"reproduce.md says something else than config for {profile}: {text}"


def test_readme_gives_the_ci_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()


def tracked_text_files() -> list[Path]:
    import subprocess
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if Path(n).suffix in (".py", ".ipynb", ".md", ".yml", ".toml", ".cff", ".txt", "")
            and (ROOT / n).is_file()]


def test_the_repository_url_is_written_once_and_stamped_everywhere_else():
    """_config.yml holds the URL; every notebook's Colab cell is the one stamped from it (in
    the .py source and, through jupytext, its twin); no other file writes a repository URL."""
    import re

    import nbformat

    from miakit.book import colab_cell
    url = colab_cell.repository_url(ROOT)
    cell = colab_cell.colab_cell(url)
    for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        assert cell in source.read_text(), f"{source.name}: run `make notebooks` to stamp the Colab cell"
        twin = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
        assert any(c.cell_type == "code" and c.source.strip() == cell.strip() for c in twin.cells), twin
    pattern = re.compile(r"github\.com/[\w.-]+/miakit\b")
    stray = [str(p.relative_to(ROOT)) for p in tracked_text_files()
             if p.name != "_config.yml" and not p.parent.name == "notebooks" and pattern.search(p.read_text())]
    assert not stray, f"repository URL written outside _config.yml: {stray}"


def test_stamping_replaces_a_stale_colab_cell_and_refuses_a_source_without_one(tmp_path):
    from miakit.book import colab_cell
    (tmp_path / "_config.yml").write_text("title: x\nrepository:\n  url: https://example.org/someone/miakit\n"
                                          "  branch: main\n")
    url = colab_cell.repository_url(tmp_path)
    assert url == "https://example.org/someone/miakit"
    stale = (ROOT / "notebooks/01_targets.py").read_text()
    copy = tmp_path / "01_targets.py"
    copy.write_text(stale)
    assert colab_cell.stamp(copy, url) and '_MIAKIT_URL = "https://example.org/someone/miakit"' in copy.read_text()
    assert not colab_cell.stamp(copy, url)  # stamping twice changes nothing
    bare = tmp_path / "02_bare.py"
    bare.write_text("# %% tags=[\"parameters\"]\nprofile = \"cpu\"\n")
    with pytest.raises(ValueError, match="no setup cell"):
        colab_cell.stamp(bare, url)
    (tmp_path / "_config.yml").write_text("title: x\n")
    with pytest.raises(ValueError, match="no repository.url"):
        colab_cell.repository_url(tmp_path)


def test_the_colab_cell_names_the_url_it_tried_when_pip_cannot_install(monkeypatch):
    """A private or moved repository: the cell stops with the URL and the fix, not a bare
    CalledProcessError followed by a ModuleNotFoundError in the next cell; elsewhere it does nothing."""
    import importlib.util
    import subprocess
    import sys
    import types

    from miakit.book import colab_cell
    cell = colab_cell.colab_cell("https://example.org/someone/private-miakit")
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args) or types.SimpleNamespace(returncode=0))
    namespace = {}
    exec(cell, namespace)  # not on Colab: nothing installed, and no name a notebook would take for a parameter
    assert calls == []
    from miakit.core import config
    config.from_namespace({k: v for k, v in namespace.items() if k != "__builtins__"})
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args) or types.SimpleNamespace(returncode=1))
    with pytest.raises(RuntimeError, match=r"could not install miakit from https://example.org/someone/private-miakit "
                                           r".* set _MIAKIT_URL in this cell to your fork"):
        exec(cell, namespace := {})
    assert not [k for k in namespace if not k.startswith("_") and not isinstance(namespace[k], types.ModuleType)]
    assert calls[-1][-1] == "miakit[hub] @ git+https://example.org/someone/private-miakit"


RECORDED_CHECK = ROOT / "benchmarks/recorded/gpu-check-h200.json"


@pytest.mark.heavy
def test_reproduce_page_costs_are_the_budget_of_the_profiles():
    """The hours tables of book/reproduce.md are miakit.chapters.budget's, for the profiles as configured
    now and the GPU check recorded in benchmarks/recorded (change a profile, or record a new
    check, and this fails until the page is regenerated)."""
    from miakit.chapters import budget

    check = json.loads(RECORDED_CHECK.read_text())
    page = (ROOT / "book/reproduce.md").read_text()
    assert budget.markdown(check=check) in page
    assert budget.step_markdown(check) in page
    assert budget.markdown() not in page  # the column of measured hours is there


@pytest.mark.heavy
def test_reproduce_page_says_which_estimates_the_recorded_gpu_check_contradicts():
    """The page says the recorded H200 step took longer than the A100 estimates of both profiles
    and the T4 estimates of the gpu profile assume (so they are optimistic: both GPUs are slower
    than an H200), and that the step sustained less than the assumed throughput. True only while
    the recorded numbers say so; it fails on a check where the estimates hold."""
    from miakit.chapters import budget
    from miakit.core import config

    check = json.loads(RECORDED_CHECK.read_text())
    page = (ROOT / "book/reproduce.md").read_text()
    assert "The measurement contradicts some of the estimates." in page
    contradicted = set()
    for profile in budget.ESTIMATED_PROFILES:
        settings = config.resolve(profile)
        measured = budget.table(settings, check[profile]["seconds_per_image_step"])["hours"]
        estimated = budget.table(settings, tflops=budget.ASSUMED_TFLOPS)
        for gpu, rate in budget.ASSUMED_TFLOPS.items():
            if (measured > estimated[f"hours, {gpu}, estimated"]).all():
                contradicted.add((profile, gpu))
                assert check[profile]["sustained TFLOP/s"] < rate
    assert contradicted == {("gpu", "T4 (fp16)"), ("gpu", "A100 (bf16)"), ("paper", "A100 (bf16)")}


def test_citation_file_cites_this_version_and_the_paper_of_the_bibliography():
    """CITATION.cff names the package's version (pyproject.toml) and, as the preferred
    citation, the paper as book/references.bib gives it."""
    import re
    import tomllib

    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    bib = (ROOT / "book/references.bib").read_text()
    entry = bib[bib.index("@article{hu2023membership"):].split("\n}\n")[0]
    field = dict(re.findall(r"(\w+)\s*=\s*\{(.+?)\}", entry))
    paper = cff["preferred-citation"]
    assert paper["title"] == field["title"] and str(paper["year"]) == field["year"]
    assert paper["journal"] == field["journal"]
    assert " and ".join(f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]) == field["author"]


def test_publishing_workflow_builds_the_cpu_book_and_publishes_site_and_notebooks():
    """The GitHub workflow tests, builds the book on the cpu profile with the run store cached,
    uploads the HTML as the Pages site and the executed notebooks as an artefact, and deploys."""
    import yaml

    flow = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    jobs = flow["jobs"]
    assert any("make test" in s.get("run", "") for s in jobs["test"]["steps"])
    build = jobs["build"]["steps"]
    assert jobs["build"]["needs"] == "test" and jobs["deploy"]["needs"] == "build"
    assert any(s.get("run", "").strip() == "make book PROFILE=cpu" for s in build)
    uses = {s.get("uses", "").split("@")[0]: s.get("with", {}) for s in build}
    assert uses["actions/cache"]["path"] == "runs"
    assert uses["actions/upload-pages-artifact"]["path"] == "_staging/_build/html"
    assert uses["actions/upload-artifact"]["path"].startswith("_staging/notebooks")
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in jobs["deploy"]["steps"])
