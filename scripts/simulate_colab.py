"""Simulate a Colab run as closely as this machine allows (``make colab-check``).

What Colab gives a notebook, and how it is stood in for here:

1. a Python with torch already installed and no miakit: a fresh virtual environment into which
   torch is installed first (the pinned CPU build, as ``make`` does), with Jupyter's kernel and
   papermill (Colab runs notebooks in a Jupyter kernel);
2. ``google.colab`` imported at kernel start: a stub package on the kernel's path, imported by an
   IPython startup file;
3. the notebook's setup cell, stamped with this repository's URL: here the same cell
   (``miakit.book.colab_cell.colab_cell``) with the URL of this checkout as a local git remote, since
   nothing here can reach GitHub. The cell pip-installs ``miakit @ git+<url>`` exactly as on Colab.

Then chapter 01 is executed on the smoke profile with its setup cell run twice (the second run
must install nothing), and the script checks: no error cell; the first setup cell installed
miakit; the second took under a few seconds; the torch installed first is still the one in use.
It prints what it measured and exits non-zero on any failure. Needs git and the package
registries (PyPI); takes a few minutes, mostly installing.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miakit.book import colab_cell  # noqa: E402

STUB = '''"""A stand-in for Colab's google.colab (miakit's Colab simulation)."""
from . import drive  # noqa: F401
'''
DRIVE_STUB = '''def mount(path, *args, **kwargs):
    raise RuntimeError("the simulation has no Google Drive: use a local runs_dir")
'''


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", help="working folder (default: a new temporary one, removed at the end)")
    parser.add_argument("--torch", default="torch==2.13.0", help="the torch requirement installed first")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="miakit-colab-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return simulate(work, args.torch)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def simulate(work: Path, torch_requirement: str) -> int:
    venv, py = work / "venv", work / "venv" / "bin" / "python"
    began = time.perf_counter()
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    run([str(py), "-m", "pip", "install", "-q", torch_requirement])  # Colab's torch comes first
    run([str(py), "-m", "pip", "install", "-q", "ipykernel", "papermill"])
    torch_before = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"], check=True,
                                  capture_output=True, text=True).stdout.strip()
    setup_seconds = time.perf_counter() - began

    # google.colab, imported when the kernel starts (as Colab's kernel does)
    stubs = work / "stubs" / "google" / "colab"
    stubs.mkdir(parents=True)
    (stubs.parent / "__init__.py").write_text("")
    (stubs / "__init__.py").write_text(STUB)
    (stubs / "drive.py").write_text(DRIVE_STUB)
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401\n")

    # this checkout as the repository the setup cell installs from (committed state, like GitHub's)
    remote = work / "remote"
    run(["git", "clone", "-q", str(ROOT), str(remote)])
    url = f"file://{remote}"

    import jupytext
    import nbformat

    nb = jupytext.read(ROOT / "notebooks" / "01_targets.py")
    setup = next(i for i, c in enumerate(nb.cells) if c.source.startswith(colab_cell.CELL_MARK))
    nb.cells[setup].source = colab_cell.colab_cell(url).rstrip("\n")
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(nb.cells[setup].source))  # the setup cell, run again
    source, executed = work / "01_targets.ipynb", work / "01_targets.out.ipynb"
    nbformat.write(nb, source)

    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(work), "IPYTHONDIR": str(work / "ipython"),
           "PYTHONPATH": str(work / "stubs"), "MPLBACKEND": "Agg"}
    run([str(py), "-m", "ipykernel", "install", "--user", "--name", "colab-sim"], env=env)
    began = time.perf_counter()
    run([str(py), "-m", "papermill", str(source), str(executed), "-k", "colab-sim", "--cwd", str(work),
         "-p", "profile", "smoke", "-p", "runs_dir", str(work / "runs")], env=env)
    notebook_seconds = time.perf_counter() - began

    out = nbformat.read(executed, as_version=4)
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    durations = [c.metadata.get("papermill", {}).get("duration") for c in out.cells[setup:setup + 2]]
    installed = subprocess.run([str(py), "-m", "pip", "show", "miakit"], capture_output=True, text=True).stdout
    torch_after = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    report = {"venv and torch (s)": round(setup_seconds, 1), "notebook (s)": round(notebook_seconds, 1),
              "setup cell, first run (s)": durations[0], "setup cell, second run (s)": durations[1],
              "miakit installed by the cell": "Name: miakit" in installed,
              "torch before / after": f"{torch_before} / {torch_after}", "error cells": len(errors)}
    print(json.dumps(report, indent=2))
    failures = [f"{len(errors)} error cell(s): {errors[:1]}"] if errors else []
    if "Name: miakit" not in installed:
        failures.append("the setup cell did not install miakit")
    if durations[1] is None or durations[1] > 5:
        failures.append(f"the second run of the setup cell took {durations[1]} s: it should do nothing")
    if torch_before != torch_after:
        failures.append(f"the setup cell replaced torch {torch_before} by {torch_after}")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
