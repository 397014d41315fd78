"""A local copy of MathJax, so that the book renders its equations with no network at view time.

The build takes MathJax from the package registry that publishes it (npm's, as a plain HTTPS
download: no npm needed), checks the archive against its pinned SHA-256, keeps it in a cache
(``$MIAKIT_CACHE`` or ``~/.cache/miakit``) and copies its browser build (``es5/``) into the staged
book's static folder, where Sphinx's ``mathjax_path`` (``_config.yml``) points.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

VERSION = "3.2.2"
URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
FOLDER = "mathjax"  # under the book's static folder; _config.yml: mathjax_path: mathjax/tex-chtml.js
ENTRY = "tex-chtml.js"


class MathJaxError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("MIAKIT_CACHE") or Path.home() / ".cache" / "miakit")


def archive(cache: Path | None = None, url: str = URL, sha256: str = SHA256) -> Path:
    """The verified MathJax archive, downloaded into ``cache`` on first use."""
    from filelock import FileLock

    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"mathjax-{VERSION}.tgz"
    with FileLock(str(path) + ".lock"):
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as err:
            raise MathJaxError(f"could not download MathJax {VERSION} from {url} ({err}); the book's equations "
                               f"need it. Put the archive at {path} by hand, or allow the package registry.") from err
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise MathJaxError(f"{url} has SHA-256 {digest}, not the pinned {sha256}: refusing it")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def install(static: Path, cache: Path | None = None, url: str = URL, sha256: str = SHA256) -> Path:
    """Copy MathJax's browser build into ``static/mathjax``; returns the entry script's path."""
    target = (Path(static) / FOLDER).resolve()
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive(cache, url, sha256).read_bytes()), mode="r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/es5/") and m.isfile()]
        for m in members:
            out = (target / m.name.removeprefix("package/es5/")).resolve()
            if not out.is_relative_to(target):
                raise MathJaxError(f"the MathJax archive names a file outside its folder: {m.name}")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(m).read())
    entry = target / ENTRY
    if not entry.exists():
        raise MathJaxError(f"the MathJax archive has no es5/{ENTRY}")
    return entry
