"""Per-image scores of every attack, exported beside the run as CSV, so that any number of the
book can be recomputed with one's own code.

Each time ``scoring.score_split`` computes or loads a registered attack's scores of a run's
split (the likelihood attack's log-likelihoods too), the scores are written to the run folder as
``scores-<cache>.csv``, where ``<cache>`` is the name of the cached safetensors file they come
from (``<kind>-<hash>``, the hash ``Run.cached`` keys it by: attack, grid, seed, model iteration,
reference models, image content), so different grids, seeds and iterations never overwrite each
other, and a second call rewrites nothing (the file is written again only when missing or older
than its cache). Writes are atomic (a temporary file in
the same folder, then ``os.replace``: ``miakit.core.store``); on a read-only store the export is
skipped with one warning and the scores are returned as usual.

One row per (image, setting), the columns (``COLUMNS``, then the attack's setting keys, then
extras):

- ``run`` the run key, ``cache`` the cache file's stem, ``attack`` the attack's name;
- ``part`` (members_val, nonmembers_val, members_test, nonmembers_test), ``member`` (1 or 0),
  ``index`` (the image's index in the run's dataset);
- ``setting`` (the position in the attack's grid), ``seed`` (the attack seed), ``iteration``
  (the training iteration of the attacked model);
- every key of the attack's grid (loss: ``t``, ``n_noise``; PIA and SimA: ``t``, ``p``; SecMI:
  ``t_sec``, ``k``; reference: ``t``, ``references``, ``n_noise``; likelihood: its solver
  settings), where a step ``t`` is in the 1000-step units of the attack grids (0 = least noise);
  grids with a step also get ``family_step`` (the family's own step, as the book's tables label
  it) and ``paper_label`` (the paper code's label of that step: mirrored for SMLD,
  ``Family.paper_label``);
- ``part`` of an attack scored on subsets of the members and nonmembers (the likelihood) is the
  part each image comes from (members_val or members_test, ...);
- ``score``, higher = member (the loss attack: the negated loss; the likelihood: log p in nats);
  an attack's per-image extras follow as columns of their own (the likelihood: ``bpd`` and
  ``nfe``); a reference attack adds ``reference_runs``.

CSV rather than parquet: pandas writes and reads it without pyarrow (not a dependency of
miakit), and R, a spreadsheet or ``csv`` read it too; floats are written in full (round-trip)
precision, so a number recomputed from the file equals the book's. ``load_scores`` reads them
back.
"""
from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np

from miakit.core.data import PARTS
from miakit.core.store import _atomic

PREFIX = "scores-"
SUFFIX = ".csv"
COLUMNS = ("run", "cache", "attack", "part", "member", "index", "setting", "seed", "iteration")
_STEP_COLUMNS = ("family_step", "paper_label")


def cache_stem(run, kind: str, payload: dict, images: dict[str, np.ndarray]) -> str:
    """``<kind>-<hash>``: the stem of the file ``Run.cached(kind, payload, images, ...)`` keeps
    its arrays in (the same key, so an export names the cache it comes from)."""
    return run.cache_stem(kind, payload, images)


def path_of(run_dir: str | os.PathLike, stem: str) -> Path:
    """Where the scores of cache ``stem`` are exported in ``run_dir``."""
    return Path(run_dir) / f"{PREFIX}{stem}{SUFFIX}"


def _parts_of(split, indices: np.ndarray, name: str) -> np.ndarray:
    """The split part of each image of ``indices`` scored as ``name`` (a part, or the union
    ``members`` / ``nonmembers`` of two)."""
    if name in PARTS:
        return np.full(len(indices), name, dtype=object)
    if name not in ("members", "nonmembers"):
        raise ValueError(f"unknown split part {name!r}")
    val = np.isin(indices, getattr(split, f"{name}_val"))
    test = np.isin(indices, getattr(split, f"{name}_test"))
    if not np.all(val | test):
        raise ValueError(f"images scored as {name} lie outside the split's {name}")
    return np.where(val, f"{name}_val", f"{name}_test").astype(object)


def frame(run, attack: str, stem: str, grid: list[dict], scores: dict[str, np.ndarray],
          indices: dict[str, np.ndarray], *, seed: int, iteration: int | None = None,
          extra: dict[str, dict[str, np.ndarray]] | None = None, columns: dict | None = None):
    """The long table of ``scores`` (part or union -> [n_images, len(grid)]) of images
    ``indices`` (the same names -> dataset indices): one row per (image, setting). ``extra`` adds
    per-image columns (column -> name -> [n_images] or [n_images, len(grid)]); ``columns`` adds
    constant ones."""
    import pandas as pd

    keys = list(dict.fromkeys(k for g in grid for k in g))
    clash = set(keys) & (set(COLUMNS) | {"score", *_STEP_COLUMNS, *(extra or {}), *(columns or {})})
    if clash:
        raise ValueError(f"setting keys {sorted(clash)} of {attack} clash with the export's columns")
    n_set = len(grid)
    steps = None
    if "t" in keys and all("t" in g for g in grid):
        fam = run.family
        family_steps = [fam.from_paper_step(int(g["t"])) for g in grid]
        steps = (family_steps, [fam.paper_label(s) for s in family_steps])
    blocks = []
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        idx = np.asarray(indices[name], dtype=np.int64)
        if values.shape != (len(idx), n_set):
            raise ValueError(f"{attack} scores of {name} have shape {values.shape}; expected {(len(idx), n_set)}")
        parts = np.repeat(_parts_of(run.split, idx, name), n_set)
        block = {
            "run": run.key, "cache": stem, "attack": attack, "part": parts,
            "member": np.char.startswith(parts.astype(str), "members").astype(np.int64),
            "index": np.repeat(idx, n_set), "setting": np.tile(np.arange(n_set), len(idx)),
            "seed": int(seed), "iteration": int(iteration if iteration is not None else run.settings.target.iterations),
        }
        for k in keys:
            block[k] = np.tile(np.array([g.get(k) for g in grid], dtype=object), len(idx))
        if steps is not None:
            block["family_step"] = np.tile(np.asarray(steps[0]), len(idx))
            block["paper_label"] = np.tile(np.asarray(steps[1]), len(idx))
        block["score"] = values.reshape(-1)
        for col, by_name in (extra or {}).items():
            v = np.asarray(by_name[name])
            block[col] = np.repeat(v, n_set) if v.ndim == 1 else v.reshape(-1)
        for col, value in (columns or {}).items():
            block[col] = value
        blocks.append(pd.DataFrame(block))
    return pd.concat(blocks, ignore_index=True)


def _write_csv(path: Path, table) -> None:
    _atomic(path, table.to_csv(index=False).encode())


def write(run_dir: str | os.PathLike, stem: str, make_table) -> Path | None:
    """Export the table ``make_table()`` builds as ``scores-<stem>.csv`` in ``run_dir``, unless
    that file is already there and not older than its cache ``<stem>.safetensors``. Returns the
    path, or None when the folder is read-only (one warning; nothing raised)."""
    path = path_of(run_dir, stem)
    source = Path(run_dir) / f"{stem}.safetensors"
    try:
        if path.exists() and (not source.exists() or path.stat().st_mtime_ns >= source.stat().st_mtime_ns):
            return path
    except OSError:
        pass
    try:
        _write_csv(path, make_table())
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        warnings.warn(f"the store is read-only ({err}): the scores were not exported to {path.name}", stacklevel=3)
        return None
    return path


def export_scored(run, attack: str, kind: str, payload: dict, images: dict[str, np.ndarray], grid: list[dict],
                  scores: dict[str, np.ndarray], *, seed: int, iteration: int | None = None,
                  references: tuple = (), extras: dict[str, dict[str, np.ndarray]] | None = None) -> Path | None:
    """Export a registered attack's scores of the parts (or unions of parts) of the split it
    scored (``scoring.score_split``): ``kind``, ``payload`` and ``images`` are what it passed to
    ``Run.cached``; ``extras`` (name -> part -> [n_images]) become columns of their own."""
    stem = cache_stem(run, kind, payload, images)
    columns = {"reference_runs": "+".join(r.key for r in references)} if references else None
    return write(run.dir, stem, lambda: frame(run, attack, stem, grid, scores, images, seed=seed,
                                              iteration=iteration, extra=extras or None, columns=columns))


def load_scores(path_or_run_dir, attack: str | None = None):
    """Every exported score file of a run folder (or one file) as one ``pandas.DataFrame``;
    only attack ``attack``'s rows when given. ``path_or_run_dir`` may also be a ``Run``. Rows of
    different files (grids, seeds, iterations) are told apart by the ``cache`` column."""
    import pandas as pd

    target = Path(getattr(path_or_run_dir, "dir", path_or_run_dir))
    if target.is_dir():
        files = sorted(target.glob(f"{PREFIX}*{SUFFIX}"))
    elif target.is_file():
        files = [target]
    else:
        raise FileNotFoundError(f"no exported scores at {target}")
    tables = [pd.read_csv(f) for f in files]
    if attack is not None:
        tables = [t[t["attack"] == attack] for t in tables]
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=[*COLUMNS, "score"])
    return pd.concat(tables, ignore_index=True)
