"""Run folders and atomic, checked, pickle-free persistence: tensors as safetensors, the rest JSON.

What a write guarantees:

- **Atomic and durable.** Every write goes to a temporary file in the same folder, is flushed
  to disk (``fsync``) and moved into place with ``os.replace`` (then the folder is synced), so
  a crash or a power cut leaves either the old file or the new one, never half of one.
- **No orphans for good.** A temporary file carries its writer's process id
  (``.<name>.<pid>.<random>.tmp``); ``clean_orphans`` removes those whose writer no longer runs
  (a SIGKILL in the middle of a write). Tensor files are serialised in memory
  (``safetensors.torch.save``) and written by the same code, so no library leaves a temporary
  file of its own; the ``.tmpXXXXXX`` files that ``safetensors.torch.save_file`` left behind in
  older stores are removed once they are an hour old. Run folders are cleaned each time a run is
  opened.
- **Readable as the umask says.** Every file is created with ``open``, so its mode is 0666 less
  the umask, tensors and JSON alike (safetensors' own writer made every tensor file 0600).
- **Checked on read.** Every tensor file records a SHA-256 of its tensors (names, dtypes,
  shapes, bytes) in its metadata; ``read_tensors`` recomputes it, so a flipped bit or a file
  from elsewhere is a ``CorruptRunError``, not silently different weights. Every JSON file
  carries a SHA-256 of its content under ``JSON_CHECKSUM``; ``read_json`` recomputes it, and a
  file that is not UTF-8 JSON at all is a ``CorruptRunError`` too.
- **Nothing non-finite.** ``write_tensors`` refuses floating tensors holding NaN or inf
  (``NonFiniteError`` naming the tensor): a diverged model or a broken score is never stored.
- **Locks.** ``lock(folder)`` is a per-folder inter-process lock (``filelock``), so a second
  process training the same run waits and then reuses the first one's result.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as serialize

CHECKSUM = "miakit.sha256"  # metadata key of a tensor file's checksum
JSON_CHECKSUM = "miakit.sha256"  # top-level key of a JSON file's checksum (of the rest of its content)
LOCK = ".lock"
_TMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp$")
_FOREIGN_TMP = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")  # safetensors' save_file (Rust tempfile) in older stores
FOREIGN_TMP_AGE = 3600.0  # seconds after which such a file is an orphan (no writer takes an hour)


class CorruptRunError(RuntimeError):
    """A stored file is truncated, unreadable, altered or belongs to another configuration."""


class NonFiniteError(ValueError):
    """A tensor to be stored holds NaN or inf."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file of ours (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as fh:  # mode 0666 less the umask; a read-only store fails here, as OSError
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_orphans(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writing process is gone; returns them."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    import time

    for path in folder.rglob(".tmp*"):
        try:
            old = time.time() - path.stat().st_mtime > FOREIGN_TMP_AGE
        except OSError:
            continue
        if _FOREIGN_TMP.match(path.name) and path.is_file() and old:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    for path in folder.rglob(".*.tmp"):
        match = _TMP.match(path.name)
        if match and not _alive(int(match.group(1))):
            try:
                path.unlink()
                removed.append(path)
            except OSError:  # read-only store: nothing to clean
                pass
    return removed


@contextmanager
def lock(folder: str | os.PathLike, timeout: float = -1) -> Iterator[None]:
    """Hold the inter-process lock of ``folder`` (created if needed); waits by default."""
    from filelock import FileLock

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / LOCK), timeout=timeout):
        yield


def json_checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 of ``payload`` in canonical JSON (sorted keys, no spaces): what ``write_json``
    records under ``JSON_CHECKSUM`` and ``read_json`` checks."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """``payload`` (a mapping) as JSON with its checksum (``json_checksum``) under ``JSON_CHECKSUM``."""
    if not isinstance(payload, Mapping) or JSON_CHECKSUM in payload:
        raise TypeError(f"write_json stores a mapping without a {JSON_CHECKSUM!r} key, not {type(payload).__name__}")
    plain = json.loads(json.dumps(payload, default=_json_default))  # what will be read back
    text = json.dumps({**plain, JSON_CHECKSUM: json_checksum(plain)}, indent=1, sort_keys=True)
    _atomic(Path(path), text.encode())


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping ``write_json`` stored at ``path``, after checking it against its checksum; a
    file that is not UTF-8 JSON, carries no checksum or does not match it is a ``CorruptRunError``
    naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            payload = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptRunError(f"{path} is not valid JSON (truncated by a crash, or overwritten?): {err}; "
                              "remove it (or its run folder) to recompute") from err
    if not isinstance(payload, dict) or JSON_CHECKSUM not in payload:
        raise CorruptRunError(f"{path} carries no checksum (written by another tool or an older miakit): "
                              "remove its run folder to recompute")
    found = payload.pop(JSON_CHECKSUM)
    if json_checksum(payload) != found:
        raise CorruptRunError(f"{path} does not match its checksum (a flipped bit or an edited file): "
                              "remove its run folder to recompute")
    return payload


def checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str] | None = None) -> None:
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    for name, t in flat.items():
        if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"not writing {path}: tensor {name!r} holds NaN or inf")
    meta = {**dict(metadata or {}), CHECKSUM: checksum(flat)}
    _atomic(Path(path), serialize(flat, metadata=meta))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptRunError(f"{path} is not a readable safetensors file (truncated?): {err}") from err


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, after checking them against the checksum written with them."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptRunError(f"{path} is not a readable safetensors file (truncated?): {err}") from err
    if CHECKSUM not in meta:
        raise CorruptRunError(f"{path} carries no checksum (written by another tool or an older miakit): "
                              "remove it to recompute")
    if checksum(tensors) != meta[CHECKSUM]:
        raise CorruptRunError(f"{path} does not match its checksum (a flipped bit or an altered file): "
                              "remove it to recompute")
    return tensors


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    write_tensors(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})


def write_cache(path: str | os.PathLike, write) -> bool:
    """``write(path)`` for a cache entry; on a read-only store, a warning instead of an error
    (the caller still has its result; only the caching is skipped). True when written."""
    import errno
    import warnings

    try:
        write(path)
        return True
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        warnings.warn(f"the store is read-only ({err}): {Path(path).name} was computed but not cached")
        return False


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in read_tensors(path).items()}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")
