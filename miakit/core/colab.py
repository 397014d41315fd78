"""Google Colab: the run store on Google Drive.

A Colab runtime forgets its disk when it disconnects. ``runs_dir="drive:<folder>"`` keeps the run
store in ``<folder>`` of the user's Google Drive ("My Drive"), mounted on first use, so a new
session resumes a training where the last one stopped (checkpoints are atomic, ``miakit.core.store``)
and reuses every finished target and cached score.

``check`` validates such a value without side effects (called by ``miakit.core.config`` before anything
runs): off Colab, or with an empty or escaping folder, it is a clear error. ``runs_root`` turns any
``runs_dir`` into the folder it names, mounting Drive when needed.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

PREFIX = "drive:"
MOUNT = Path("/content/drive")  # where Colab mounts Google Drive; "My Drive" is MOUNT / "MyDrive"


def on_colab() -> bool:
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def check(runs_dir: str) -> str | None:
    """The Drive folder that ``runs_dir`` names (None when it names a local path), or a
    ValueError saying why it cannot be used."""
    if not runs_dir.startswith(PREFIX):
        return None
    folder = runs_dir[len(PREFIX):].strip("/")
    parts = PurePosixPath(folder).parts
    if not folder or ".." in parts:
        raise ValueError(f"runs_dir={runs_dir!r}: name a folder inside your Google Drive, such as 'drive:miakit-runs'")
    if not on_colab():
        raise ValueError(f"runs_dir={runs_dir!r} keeps the run store on Google Drive, which needs Google Colab "
                         "(google.colab is not importable here); give a local folder instead")
    return folder


def runs_root(runs_dir: str) -> Path:
    """The folder of the run store: ``runs_dir`` itself, or for ``drive:<folder>`` that folder in
    My Drive, Drive being mounted first when it is not."""
    folder = check(runs_dir)
    if folder is None:
        return Path(runs_dir)
    mine = MOUNT / "MyDrive"
    if not mine.is_dir():
        from google.colab import drive

        drive.mount(str(MOUNT))
    return mine / folder
