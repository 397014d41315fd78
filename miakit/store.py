"""Run folders and atomic, pickle-free persistence: tensors as safetensors, everything else JSON.

Every write goes to a temporary file in the same folder and is moved into place with
``os.replace``, so a crash leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CorruptRunError(RuntimeError):
    """A stored file is truncated, unreadable or belongs to another configuration."""


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, payload: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())

    _atomic(Path(path), write)


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise CorruptRunError(f"{path} is not valid JSON (truncated by a crash?): {err}") from err


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str] | None = None) -> None:
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(flat, tmp, metadata=dict(metadata or {})))


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptRunError(f"{path} is not a readable safetensors file (truncated?): {err}") from err


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    write_tensors(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})


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
