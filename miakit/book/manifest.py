"""The run manifest: what produced a build of the book, for its appendix.

Package versions, the commit (and whether the working tree differed from it), the machine, the
device and precision the runs used, the seeds, and the profile. The chapters' own times are
glued by each chapter (``seconds``) and shown beside this table on the manifest page.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from miakit.core.config import Settings

PACKAGES = ("miakit", "torch", "diffusers", "opacus", "torchdiffeq", "numpy", "scipy", "scikit-learn", "pandas",
            "matplotlib", "safetensors", "papermill", "jupyter-book")


def versions(packages=PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def commit(root: Path | None = None) -> str:
    """The checked-out commit, and "(plus uncommitted changes)" when the tracked files differ."""
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" (plus uncommitted changes)" if dirty else "")


def hardware(settings: Settings) -> dict[str, str]:
    import torch

    from miakit.diffusion.unet import pick_device, precision

    device = pick_device(settings.device)
    out = {"machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs",
           "torch threads": str(torch.get_num_threads()), "device": str(device)}
    if device.type == "cuda":
        out["GPU"] = torch.cuda.get_device_name(device)
    out["precision"] = precision(device).name
    return out


def seeds(settings: Settings) -> dict[str, str]:
    from miakit.chapters import factors

    return {"split seed": str(settings.data.split_seed), "training seed of the targets": str(settings.target.train_seed),
            "training seeds of the comparisons": ", ".join(map(str, factors.seeds(settings))),
            "attack seed (noise draws and probes)": str(settings.attack.attack_seed)}


def table(settings: Settings, root: Path | None = None):
    """One table (section, item, value) of everything above, and the profile."""
    import pandas as pd

    rows = [("build", "profile", settings.profile), ("build", "commit", commit(root)),
            ("build", "interpreter", sys.executable)]
    rows += [("packages", k, v) for k, v in versions().items()]
    rows += [("hardware", k, v) for k, v in hardware(settings).items()]
    rows += [("seeds", k, v) for k, v in seeds(settings).items()]
    return pd.DataFrame(rows, columns=["section", "item", "value"]).set_index(["section", "item"])


# The whole build's time is known only when its HTML is built, after every page is rendered: the
# pages hold a placeholder (raw HTML in their Markdown) that the build fills in afterwards.
BUILD_TOTAL, BUILD_PARTS = "miakit-build-minutes", "miakit-build-parts"
_PLACEHOLDER = re.compile(r'<span class="(' + BUILD_TOTAL + "|" + BUILD_PARTS + r')">')
_SPAN = re.compile(r"<span\b[^>]*>|</span>")


def build_time_text(seconds: dict[str, float]) -> dict[str, str]:
    """The text of each placeholder for the seconds of the build's phases (wall-clock, in the order
    they ran: ``trainings and notebooks``, or ``notebooks``, then ``HTML``): the total in minutes,
    and the phases."""
    total = sum(seconds.values())
    parts = ", ".join(f"{name} {value / 60:.1f}" for name, value in seconds.items())
    return {BUILD_TOTAL: f"{total / 60:.0f}", BUILD_PARTS: f"{total / 60:.0f} minutes ({parts} minutes)"}


def _fill(html: str, text: dict[str, str]) -> str:
    """Each placeholder's content replaced up to its own closing tag: the rendered placeholder
    holds spans of its own (``make book`` in code is ``<code><span class="pre">make</span> ...``),
    so the first ``</span>`` is not its end."""
    out, at = [], 0
    for opening in _PLACEHOLDER.finditer(html):
        if opening.start() < at:
            continue  # inside a placeholder already filled
        depth, end = 1, None
        for tag in _SPAN.finditer(html, opening.end()):
            depth += -1 if tag.group(0) == "</span>" else 1
            if depth == 0:
                end = tag.start()
                break
        if end is None:
            raise ValueError(f"the build-time placeholder at character {opening.start()} has no closing </span>")
        out += [html[at:opening.end()], text[opening.group(1)]]
        at = end
    return "".join(out) + html[at:]


def stamp_build_time(html_dir: Path, seconds: dict[str, float]) -> list[Path]:
    """Fill every build-time placeholder under ``html_dir`` with ``build_time_text``; returns the
    pages it changed."""
    text = build_time_text(seconds)
    changed = []
    for page in sorted(Path(html_dir).rglob("*.html")):
        html = page.read_text()
        new = _fill(html, text)
        if new != html:
            page.write_text(new)
            changed.append(page)
    return changed
