"""Execute the notebooks with papermill and build the Jupyter Book, offline and strict.

    python -m miakit.book --profile cpu                 # what `make book` runs
    python -m miakit.book --profile smoke -p runs_dir=/tmp/runs --stage /tmp/stage

The committed, outputs-free ``notebooks/NN_*.ipynb`` (twins of the jupytext ``.py`` sources)
are executed into a staging copy of the book at the same paths, so the rendered pages and the
Colab launch buttons point at notebooks that exist in the repository. Papermill never writes
into the committed notebooks. Unknown parameters are rejected before anything runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from miakit.chapters import feasibility
from miakit.book import interactive, manifest, mathjax
from miakit.core.config import resolve
from miakit.core.data import DatasetError

ROOT_FILES = ("_config.yml", "_toc.yml")
ROOT_DIRS = ("book",)
STAGE_MARK = ".miakit-stage"  # a staging folder miakit made (and may overwrite)


def notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def check_parameters(profile: str, parameters: dict) -> None:
    """Every parameter name and value checked as the notebooks will (``config.resolve``), and a
    folder dataset's folder present, before a kernel starts or anything is written."""
    try:
        settings = resolve(profile, **parameters)
    except ValueError as err:
        raise SystemExit(f"invalid parameters: {err}") from None
    kind, _, where = settings.data.dataset.partition(":")
    if kind in ("folder", "folder-skip-unreadable") and not Path(where).is_dir():
        raise SystemExit(f"dataset={settings.data.dataset!r}: the folder {where} does not exist")
    try:
        feasibility.check(settings)  # every chapter's images, before chapter 01 trains for hours
    except (feasibility.Infeasible, DatasetError) as err:
        raise SystemExit(f"invalid parameters: {err}") from None


def check_stage(stage: Path, default: Path, root: Path | None = None) -> None:
    """Refuse a staging folder that holds files miakit did not put there (staging overwrites
    ``_config.yml``, ``_toc.yml`` and ``book/``), or one inside a folder staging copies
    (``book/`` would be copied into itself) or elsewhere inside the checkout ``root`` (its
    files would be overwritten or committed); the default ``<root>/_staging`` is ignored by git."""
    if root is not None and stage != default:
        for name in ROOT_DIRS:
            if stage.is_relative_to((root / name).resolve()):
                raise SystemExit(f"--stage {stage} lies inside {root / name}, which staging copies: it would copy "
                                 "itself without end. Pass a folder outside the checkout.")
        if stage.is_relative_to(root):
            raise SystemExit(f"--stage {stage} lies inside the checkout {root}: pass a folder outside it "
                             f"(or leave --stage out for {default})")
    if stage == default or not stage.exists():
        return
    if not stage.is_dir():
        raise SystemExit(f"--stage {stage} is not a folder")
    if any(stage.iterdir()) and not (stage / STAGE_MARK).exists():
        raise SystemExit(f"--stage {stage} is a non-empty folder that miakit did not make; staging would "
                         "overwrite its files. Pass an empty or new folder.")


# What a notebook reads that another one computes (cached scores in the run store): when notebooks
# run side by side (``--side-by-side``), each waits for these, so nothing is computed twice. The back
# matter (90_*) reads every chapter and runs after all of them.
def after(stem: str) -> tuple[str, ...]:
    """The notebooks chapter ``stem`` reads cached scores of (its ``contract.Chapter.after``)."""
    from miakit.chapters import book_chapters

    return next((chapter.after for chapter in book_chapters() if chapter.notebook == stem), ())


def waits_for(stem: str, selected: list[str]) -> list[str]:
    """The notebooks among ``selected`` that ``stem`` runs after (``after``; the back matter after
    every chapter)."""
    if not stem.startswith("0"):
        return [other for other in selected if other.startswith("0")]
    return [other for other in after(stem) if other in selected]


def loads(stem: str) -> tuple[str, ...] | None:
    """The chapters (numbers) whose trainings notebook ``stem`` loads: its chapter's own and its
    ``contract.Chapter.loads``; None for the back matter, which loads every chapter's; none for a
    notebook that no chapter declares."""
    from miakit.chapters import book_chapters

    if not stem.startswith("0"):
        return None
    chapter = next((chapter for chapter in book_chapters() if chapter.notebook == stem), None)
    return () if chapter is None else (chapter.number, *chapter.loads)


def chapters_loaded(selected: list[str]) -> set[str] | None:
    """The chapters whose trainings the notebooks ``selected`` load (``loads``); None: every chapter's."""
    found = set()
    for stem in selected:
        chapters = loads(stem)
        if chapters is None:
            return None
        found.update(chapters)
    return found


def run_order(selected: list[str]) -> list[str]:
    """The order in which side-by-side workers start the notebooks: one that others wait for first
    (transitively), then the later chapters (the longer ones), so the longest chain starts at once."""
    def waiting_on(stem: str) -> int:
        return sum(stem in _ancestors(other, selected) for other in selected)

    return sorted(selected, key=lambda stem: (-waiting_on(stem), -selected.index(stem)))


def _ancestors(stem: str, selected: list[str]) -> set[str]:
    found, todo = set(), list(waits_for(stem, selected))
    while todo:
        other = todo.pop()
        if other not in found:
            found.add(other)
            todo += waits_for(other, selected)
    return found


def execute(root: Path, stage: Path, profile: str, parameters: dict, only: list[str] | None = None,
            workers: int = 0, trainings: list | None = None, pool=None, train_workers: int = 0,
            trained: dict | None = None) -> dict:
    """Run every notebook into ``stage``; return seconds per notebook. With ``workers`` > 1 the
    notebooks run that many at a time, each kernel single-threaded (on a CPU two single-threaded
    processes scored about 1.24x the images of one process with two threads,
    ``benchmarks/threads.py --work score``), in ``run_order`` and each after the ones it ``waits_for``; a kernel's
    log is kept in ``stage/logs``.

    With ``trainings`` (``contract.Training``, in the order to start them: ``budget.in_book_order``)
    and a ``pool`` of ``train_workers`` training processes, the targets train on the pool while the
    notebooks run: no more jobs at a time than the larger of ``workers`` and ``train_workers``,
    each notebook started, before the next training, once the trainings of the chapters it
    ``loads`` are done, so no core idles while one phase waits for the other. ``trained`` (a dict)
    receives each training's seconds."""
    import papermill

    check_parameters(profile, parameters)
    chosen = [nb for nb in notebooks(root) if only is None or nb.stem in only]
    (stage / "notebooks").mkdir(parents=True, exist_ok=True)
    if trainings or (workers > 1 and len(chosen) > 1):
        return _execute_side_by_side(root, stage, profile, parameters, chosen, max(workers, 1), trainings or [],
                                     pool, train_workers, {} if trained is None else trained)
    timings = {}
    for nb in chosen:
        out = stage / "notebooks" / nb.name
        print(f"[book] executing {nb.name} (profile {profile})", flush=True)
        began = time.perf_counter()
        for attempt in range(STARTUP_RETRIES + 1):
            try:
                papermill.execute_notebook(str(nb), str(out), parameters={"profile": profile, **parameters},
                                           cwd=str(root), kernel_name="python3", progress_bar=False)
                break
            except RuntimeError as err:
                if attempt == STARTUP_RETRIES or not failed_at_startup(str(err)):
                    raise
                print(f"[book] {nb.name}: its kernel failed to start; starting it once more", flush=True)
        timings[nb.stem] = round(time.perf_counter() - began, 1)
        print(f"[book] {nb.name} took {timings[nb.stem]} s", flush=True)
    return timings


# jupyter_client's words when a kernel fails before it ran a cell: the notebook is not at fault, so its
# run starts once more (CI saw chapter 05's kernel die at startup once in a few dozen builds)
KERNEL_STARTUP_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")
STARTUP_RETRIES = 1


def failed_at_startup(log: str) -> bool:
    """Whether a papermill log ends in a kernel that failed to start (no cell of the notebook ran)."""
    return any(words in log for words in KERNEL_STARTUP_FAILURES)


def _execute_side_by_side(root: Path, stage: Path, profile: str, parameters: dict, chosen: list[Path],
                          workers: int, trainings: list, pool, train_workers: int, trained: dict) -> dict:
    from collections import Counter

    from miakit.training import train

    by_stem = {nb.stem: nb for nb in chosen}
    selected = list(by_stem)
    pending = run_order(selected)
    logs = stage / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # torch takes one intra-op thread
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    timings: dict[str, float] = {}
    retried: dict[str, int] = {}
    queue = list(trainings)  # not started yet
    training: dict = {}  # future -> (Training, when it started)
    untrained = Counter(tr.chapter for tr in trainings)  # per chapter, the trainings not finished
    slots = max(workers, train_workers if trainings else 0)

    def trained_for(stem: str) -> bool:
        chapters = loads(stem)
        return all(not left for chapter, left in untrained.items() if chapters is None or chapter in chapters)

    def start(stem: str) -> subprocess.Popen:
        nb = by_stem[stem]
        cmd = [sys.executable, "-m", "papermill", str(nb), str(stage / "notebooks" / nb.name),
               "-y", json.dumps({"profile": profile, **parameters}), "--cwd", str(root),
               "-k", "python3", "--no-progress-bar"]
        with open(logs / f"{stem}.log", "wb") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    try:
        while pending or running or queue or training:
            for stem in list(pending):
                if len(running) >= workers or len(running) + len(training) >= slots:
                    break
                if all(other in timings for other in waits_for(stem, selected)) and trained_for(stem):
                    pending.remove(stem)
                    print(f"[book] executing {stem}.ipynb (profile {profile}, beside {len(running) + len(training)} "
                          "other jobs)", flush=True)
                    running[stem] = (start(stem), time.perf_counter())
            while queue and len(training) < train_workers and len(running) + len(training) < slots:
                tr = queue.pop(0)
                training[train.submit(pool, tr.settings, tr.reference)] = (tr, time.perf_counter())
            if not running and not training:
                raise RuntimeError(f"notebooks {pending} wait for notebooks that are not run")  # cannot happen
            time.sleep(0.5)
            for future in [future for future in training if future.done()]:
                tr, began = training.pop(future)
                try:
                    future.result()
                except Exception as err:
                    raise SystemExit(f"training {tr.what} (chapter {tr.chapter}) failed: {type(err).__name__}: {err}")
                untrained[tr.chapter] -= 1
                trained[f"{tr.chapter} {tr.what}"] = round(time.perf_counter() - began, 1)
                print(f"[book] trained {tr.what} (chapter {tr.chapter}) in {trained[f'{tr.chapter} {tr.what}']} s; "
                      f"{len(queue) + len(training)} trainings left", flush=True)
            for stem, (proc, began) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[stem]
                if proc.returncode:
                    tail = (logs / f"{stem}.log").read_text(errors="replace")[-3000:]
                    if failed_at_startup(tail) and retried.get(stem, 0) < STARTUP_RETRIES:
                        retried[stem] = retried.get(stem, 0) + 1
                        print(f"[book] {stem}.ipynb: its kernel failed to start; starting it once more", flush=True)
                        running[stem] = (start(stem), began)
                        continue
                    raise SystemExit(f"{stem}.ipynb failed (exit {proc.returncode}); its log is "
                                     f"{logs / (stem + '.log')}, ending:\n{tail}")
                timings[stem] = round(time.perf_counter() - began, 1)
                print(f"[book] {stem}.ipynb took {timings[stem]} s", flush=True)
    finally:
        for proc, _ in running.values():  # a failure stops the others (their runs resume on the next build)
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
        for future in training:  # trainings not begun are dropped; a running one finishes and is kept
            future.cancel()
    return {stem: timings[stem] for stem in selected}


def stage_sources(root: Path, stage: Path) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    (stage / STAGE_MARK).write_text("made by miakit.book: its _config.yml, _toc.yml and book/ are overwritten\n")
    for name in ROOT_FILES:
        shutil.copy2(root / name, stage / name)
    for name in ROOT_DIRS:
        shutil.rmtree(stage / name, ignore_errors=True)
        shutil.copytree(root / name, stage / name)


def fold_injected_parameters(folder: Path) -> list[Path]:
    """Fold papermill's "injected-parameters" cell of every executed notebook under ``folder``
    (the MyST-NB tag ``hide-cell``), as the parameters cell it follows is folded: a reader meets
    the chapter's results, not its settings. Returns the notebooks it changed."""
    changed = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        nb = json.loads(path.read_text())
        touched = False
        for cell in nb.get("cells", []):
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if "injected-parameters" in tags and "hide-cell" not in tags:
                tags.append("hide-cell")
                touched = True
        if touched:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def build_html(stage: Path) -> Path:
    """Strict offline Jupyter Book 1 build of the staged book; returns the HTML folder."""
    shutil.rmtree(stage / "_build", ignore_errors=True)
    fold_injected_parameters(stage / "notebooks")
    mathjax.install(stage / "book" / "_static")  # the equations render offline (_config.yml: mathjax_path)
    interactive.install(stage / "book" / "_static")  # the interactive figures' plotly.js, served by the book
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "-W", "-n", "--keep-going"]
    result = subprocess.run(cmd)
    if result.returncode:
        raise SystemExit(f"jupyter-book build failed (exit {result.returncode})")
    return stage / "_build" / "html"


def _on_cpu(settings) -> bool:
    """Whether the runs train on the CPU (parallel training processes pay off there, not on one GPU)."""
    from miakit.diffusion.unet import pick_device

    return pick_device(settings.device).type == "cpu"


def parse_parameter(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"parameter {text!r} is not key=value")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, parsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("-p", "--parameter", action="append", type=parse_parameter, default=[],
                        help="notebook parameter key=value (JSON values), any number of times")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--stage", type=Path, default=None, help="staging folder (default: <root>/_staging)")
    parser.add_argument("--only", nargs="*", help="notebook stems to execute (default: all; none given: stage only)")
    parser.add_argument("--no-html", action="store_true", help="execute only, do not build HTML")
    parser.add_argument("--workers", type=int, default=0,
                        help="on a CPU, train the targets the notebooks load in this many single-threaded processes "
                             "while the notebooks run (each notebook starts once its chapters' targets are trained; "
                             "fastest on a CPU, alone or beside other work); 0: the notebooks train them")
    parser.add_argument("--side-by-side", type=int, default=1, metavar="N",
                        help="execute N notebooks at a time on a CPU, each kernel single-threaded, each after the notebooks "
                             "whose results it reads (default 1: one after another, with torch's default threads; "
                             "on a GPU always 1)")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f"--workers {args.workers}: give 0 (train inside the notebooks) or a positive count")
    if args.side_by_side < 1:
        parser.error(f"--side-by-side {args.side_by_side}: give 1 (one notebook after another) or more")
    root = args.root.resolve()
    default_stage = (root / "_staging").resolve()
    stage = (args.stage or default_stage).resolve()
    parameters = dict(args.parameter)
    if "profile" in parameters:
        parser.error("profile is not a notebook parameter: pass --profile " + str(parameters["profile"]))
    if args.only is not None:
        known = [nb.stem for nb in notebooks(root)]
        unknown = [name for name in args.only if name not in known]
        if unknown:
            parser.error(f"--only {' '.join(unknown)}: not a notebook of this book; choose from " + ", ".join(known)
                         + " (or give --only alone to stage the book without executing anything)")
    check_parameters(args.profile, parameters)
    check_stage(stage, default_stage, root)
    stage_sources(root, stage)
    settings = resolve(args.profile, **parameters)
    phases = {}  # wall-clock seconds of each phase of the build, for the manifest page
    side_by_side = args.side_by_side
    if side_by_side > 1 and not _on_cpu(settings):  # kernels beside each other would share one GPU's memory
        print(f"[book] --side-by-side {side_by_side}: the runs use a GPU, so the notebooks run one after another",
              flush=True)
        side_by_side = 1
    began = time.perf_counter()
    trained: dict[str, float] = {}
    if args.workers and _on_cpu(settings):
        from miakit.chapters import budget

        feasibility.check(settings)
        selected = [nb.stem for nb in notebooks(root) if args.only is None or nb.stem in args.only]
        todo = budget.in_book_order(settings, chapters_loaded(selected))
        print(f"[book] {len(todo)} trainings in {args.workers} processes, beside the notebooks", flush=True)
        with budget.process_pool(args.workers) as pool:
            timings = execute(root, stage, args.profile, parameters, args.only, side_by_side, todo, pool,
                              args.workers, trained)
        phases["trainings and notebooks"] = round(time.perf_counter() - began, 1)
    else:
        timings = execute(root, stage, args.profile, parameters, args.only, side_by_side)
        phases["notebooks"] = round(time.perf_counter() - began, 1)
    if not args.no_html:
        began = time.perf_counter()
        html = build_html(stage)
        phases["HTML"] = round(time.perf_counter() - began, 1)
        manifest.stamp_build_time(html, phases)
        print(f"[book] HTML: {html / 'index.html'}")
    (stage / "timings.json").write_text(json.dumps({"profile": args.profile, "seconds": timings, "phases": phases,
                                                    "trainings": trained}, indent=1))
    print(f"[book] seconds per notebook: {timings}; phases: {phases}")


if __name__ == "__main__":
    main()
