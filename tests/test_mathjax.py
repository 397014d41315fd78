"""The book's local MathJax: fetched once, checked against its pinned hash, copied into the static
folder that _config.yml's mathjax_path points into. Tested on archives the test builds (file://
URLs): nothing downloads here."""
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from miakit.book import mathjax

ROOT = Path(__file__).resolve().parents[1]


def _archive(path: Path, files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_install_copies_the_browser_build_and_caches_the_verified_archive(tmp_path):
    source = tmp_path / "mathjax.tgz"
    digest = _archive(source, {"package/es5/tex-chtml.js": b"/* mathjax */",
                               "package/es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff": b"font",
                               "package/README.md": b"not copied"})
    static = tmp_path / "static"
    entry = mathjax.install(static, cache=tmp_path / "cache", url=source.as_uri(), sha256=digest)
    assert entry == (static / "mathjax" / "tex-chtml.js").resolve() and entry.read_bytes() == b"/* mathjax */"
    assert (static / "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").read_bytes() == b"font"
    assert not (static / "mathjax" / "README.md").exists()
    source.unlink()  # the second install reads the cache, not the URL
    assert mathjax.install(static, cache=tmp_path / "cache", url=source.as_uri(), sha256=digest) == entry


def test_an_archive_that_is_not_the_pinned_one_is_refused_and_not_cached(tmp_path):
    source = tmp_path / "mathjax.tgz"
    _archive(source, {"package/es5/tex-chtml.js": b"tampered"})
    with pytest.raises(mathjax.MathJaxError, match="not the pinned"):
        mathjax.archive(tmp_path / "cache", url=source.as_uri(), sha256="0" * 64)
    assert not list((tmp_path / "cache").glob("*.tgz"))


def test_an_archive_that_writes_outside_its_folder_is_refused(tmp_path):
    source = tmp_path / "mathjax.tgz"
    digest = _archive(source, {"package/es5/../../../escaped.js": b"x", "package/es5/tex-chtml.js": b"x"})
    with pytest.raises(mathjax.MathJaxError, match="outside"):
        mathjax.install(tmp_path / "static", cache=tmp_path / "cache", url=source.as_uri(), sha256=digest)
    assert not (tmp_path / "escaped.js").exists()


def test_an_unreachable_registry_says_what_to_do(tmp_path):
    with pytest.raises(mathjax.MathJaxError, match="by hand"):
        mathjax.archive(tmp_path / "cache", url=(tmp_path / "absent.tgz").as_uri())


def test_the_book_configuration_points_at_the_installed_entry():
    assert f"mathjax_path: {mathjax.FOLDER}/{mathjax.ENTRY}" in (ROOT / "_config.yml").read_text()
