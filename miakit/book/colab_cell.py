"""The repository URL, written once (``_config.yml``: ``repository.url``), and the Colab setup
cell every notebook carries, stamped from it by ``make notebooks``.

    python -m miakit.book.colab_cell            # stamp notebooks/NN_*.py with the configured URL

The setup cell is idempotent: on Colab it installs miakit (the package and its runtime
dependencies, not the book tooling; Colab's own torch is kept, since torch is not pinned) only
when miakit is not importable yet, so re-running the cell or the whole notebook is safe; it does
nothing elsewhere. To publish a fork: push the repository, set ``repository.url`` in
``_config.yml``, run ``make notebooks`` and commit.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

CONFIG = "_config.yml"
CELL_MARK = "# Colab only:"  # first line of the setup cell, after its cell marker
NEXT_CELL = '# %% tags=["parameters"'


def repository_url(root: Path) -> str:
    """``repository.url`` of ``root/_config.yml`` (read without a YAML library: the key is a
    plain scalar in a top-level ``repository:`` block)."""
    text = (Path(root) / CONFIG).read_text()
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, re.MULTILINE)
    url = block and re.search(r"^[ \t]+url:[ \t]*[\"']?([^\"'\s#]+)", block.group(1), re.MULTILINE)
    if not url:
        raise ValueError(f"{Path(root) / CONFIG} has no repository.url")
    if not re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", url.group(1)):
        raise ValueError(f"repository.url {url.group(1)!r} is not https://<host>/<owner>/<name>")
    return url.group(1)


def colab_cell(url: str) -> str:
    """The setup cell's source (jupytext percent format, without its cell marker). When pip
    cannot install from ``url`` (a private or moved repository), it stops with a message naming
    the URL it tried and how to point the cell at a fork, instead of a bare CalledProcessError
    and a ModuleNotFoundError in the next cell."""
    return (f"{CELL_MARK} install miakit once (re-running is safe; does nothing elsewhere).\n"
            "import importlib.util\n"
            "import subprocess\n"
            "import sys\n"
            "\n"
            f"_MIAKIT_URL = \"{url}\"  # a fork: set repository.url in _config.yml and run `make notebooks`\n"
            "if \"google.colab\" in sys.modules and importlib.util.find_spec(\"miakit\") is None:\n"
            "    _pip = [sys.executable, \"-m\", \"pip\", \"install\", \"-q\", f\"miakit[hub] @ git+{_MIAKIT_URL}\"]\n"
            "    if subprocess.run(_pip).returncode:\n"
            "        raise RuntimeError(f\"pip could not install miakit from {_MIAKIT_URL} (its output is above). If that \"\n"
            "                           \"repository is private, moved or not yet pushed, set _MIAKIT_URL in this cell to \"\n"
            "                           \"your fork (https://github.com/<you>/<fork>) and run the cell again.\")\n"
            "    importlib.invalidate_caches()\n")


def stamp(source: Path, url: str) -> bool:
    """Replace the setup cell of jupytext source ``source`` by ``colab_cell(url)``; True when the
    file changed. A source without the cell is an error (every notebook carries it)."""
    text = source.read_text()
    start, end = text.find(CELL_MARK), text.find(NEXT_CELL)
    if start < 0 or end < start:
        raise ValueError(f"{source} has no setup cell ('{CELL_MARK}' before '{NEXT_CELL}')")
    new = text[:start] + colab_cell(url) + "\n" + text[end:]
    if new != text:
        source.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> None:
    root = Path(argv[0]) if argv else Path.cwd()
    url = repository_url(root)
    changed = [p.name for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.py")) if stamp(p, url)]
    print(f"repository {url}: " + (f"stamped {', '.join(changed)}" if changed else "every notebook already stamped"))


if __name__ == "__main__":
    main(sys.argv[1:])
