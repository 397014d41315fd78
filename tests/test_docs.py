"""The prose states the profiles as miakit.config defines them (no number typed twice may drift)."""
from pathlib import Path

import pytest

from miakit import config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["cpu", "gpu", "paper"])
def test_reproduce_page_profile_row_matches_config(profile):
    rows = [line for line in (ROOT / "book/reproduce.md").read_text().splitlines()
            if line.startswith(f"| `{profile}`") and not line.split("|")[2].strip().isdigit()]  # not a cost row
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

    from miakit import repository
    url = repository.repository_url(ROOT)
    cell = repository.colab_cell(url)
    for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        assert cell in source.read_text(), f"{source.name}: run `make notebooks` to stamp the Colab cell"
        twin = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
        assert any(c.cell_type == "code" and c.source.strip() == cell.strip() for c in twin.cells), twin
    pattern = re.compile(r"github\.com/[\w.-]+/miakit\b")
    stray = [str(p.relative_to(ROOT)) for p in tracked_text_files()
             if p.name != "_config.yml" and not p.parent.name == "notebooks" and pattern.search(p.read_text())]
    assert not stray, f"repository URL written outside _config.yml: {stray}"


def test_stamping_replaces_a_stale_colab_cell_and_refuses_a_source_without_one(tmp_path):
    from miakit import repository
    (tmp_path / "_config.yml").write_text("title: x\nrepository:\n  url: https://example.org/someone/miakit\n"
                                          "  branch: main\n")
    url = repository.repository_url(tmp_path)
    assert url == "https://example.org/someone/miakit"
    stale = (ROOT / "notebooks/01_targets.py").read_text()
    copy = tmp_path / "01_targets.py"
    copy.write_text(stale)
    assert repository.stamp(copy, url) and "git+https://example.org/someone/miakit" in copy.read_text()
    assert not repository.stamp(copy, url)  # stamping twice changes nothing
    bare = tmp_path / "02_bare.py"
    bare.write_text("# %% tags=[\"parameters\"]\nprofile = \"cpu\"\n")
    with pytest.raises(ValueError, match="no setup cell"):
        repository.stamp(bare, url)
    (tmp_path / "_config.yml").write_text("title: x\n")
    with pytest.raises(ValueError, match="no repository.url"):
        repository.repository_url(tmp_path)


def test_reproduce_page_costs_are_the_budget_of_the_profiles():
    """The hours table of book/reproduce.md is miakit.budget's, for the profiles as configured
    now (change a profile and this fails until the page is regenerated)."""
    from miakit import budget

    assert budget.markdown() in (ROOT / "book/reproduce.md").read_text()
