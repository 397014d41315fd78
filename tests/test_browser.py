"""The smoke book as its readers meet it: every page opened in headless Chromium (Debian's
``chromium``, driven by Playwright), served over HTTP from the build folder with every request
that leaves the book refused and recorded.

Each page must show no console error, no uncaught script error, no failed or outside request,
no image that does not decode, no error output cell, no unresolved glue or reference, its
mathematics typeset by the book's own MathJax (no raw TeX left), every table and display equation inside the page or
scrollable, no table that needs a sideways scrollbar at 1280 px, no ``NaN``, warning text or
developer's phrase in its text, the overview's table before any code a reader sees, and, on the chapters, launch buttons that point at the repository of
``_config.yml`` and a download link to the executed notebook. A full-page screenshot of each
page goes to ``<build>/screenshots``.

``make test`` installs Debian's Chromium when it is missing and it may (root and apt), or Playwright's own
Chromium is used when installed; without either the test
is skipped, except under CI (``CI`` set), where a missing browser is a failure.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from miakit.book import colab_cell

ROOT = Path(__file__).resolve().parents[1]
# Debian's chromium (what make test installs), or MIAKIT_CHROMIUM; else Playwright's own Chromium
# (`python -m playwright install chromium`, what the GitHub workflow uses), when it is installed
CHROMIUM = os.environ.get("MIAKIT_CHROMIUM") or shutil.which("chromium")
HOST = "127.0.0.1"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def _require_browser():
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    else:
        if CHROMIUM is None:
            with sync_playwright() as pw:
                if not Path(pw.chromium.executable_path).exists():
                    missing.append("Chromium (apt-get install chromium, or python -m playwright install chromium)")
        elif not Path(CHROMIUM).exists():
            missing.append(f"Chromium at {CHROMIUM}")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; under CI it must run")
        pytest.skip(message)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    _require_browser()
    html = built_book / "_build" / "html"
    server = http.server.ThreadingHTTPServer((HOST, 0), functools.partial(_Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/", html
    finally:
        server.shutdown()
        server.server_close()


def pages(html: Path) -> list[str]:
    """Every page of the site; the front page's redirect stub (``index.html``) is checked apart."""
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(html).parts) and not _redirect(p))


def _redirect(page: Path) -> str | None:
    import re

    found = re.search(r'http-equiv="refresh"\s+content="0;\s*url=([^"]+)"', page.read_text(), re.IGNORECASE)
    return found.group(1) if found else None


# one script per check, run in the page after load (and after MathJax has typeset)
IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
ERROR_CELLS = ("Array.from(document.querySelectorAll('.output.traceback, .output.error, .cell_output .traceback'))"
               ".map(e => e.textContent.slice(0, 200))")
MATH = """async () => {
  const math = document.querySelectorAll('.math, div.math, span.math');
  if (!math.length) return {math: 0, typeset: 0, errors: 0};
  if (!(window.MathJax && MathJax.startup)) return {math: math.length, typeset: 0, errors: 0, missing: true};
  await MathJax.startup.promise;
  return {math: math.length, typeset: document.querySelectorAll('mjx-container').length,
          errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length};
}"""
# a table or display equation is fine when it fits inside the article, or when it (or a wrapper inside the
# article) scrolls sideways
WIDE = """() => {
  const article = document.querySelector('article') || document.body;
  const right = article.getBoundingClientRect().right + 1;
  const bad = [];
  for (const t of article.querySelectorAll('table, mjx-container[display="true"]')) {
    if (t.getBoundingClientRect().right <= right) continue;
    let el = t, scrolls = false;
    while (el && el !== article) {
      const s = getComputedStyle(el).overflowX;
      if ((s === 'auto' || s === 'scroll') && el.getBoundingClientRect().right <= right) { scrolls = true; break; }
      el = el.parentElement;
    }
    if (!scrolls) bad.push(t.tagName.toLowerCase() + ': ' + (t.innerText || t.textContent || '').slice(0, 60));
  }
  return bad;
}"""
# the reader's view at 1280 px: no table that needs a sideways scrollbar, no page wider than the window
SCROLLS = """() => {
  const bad = [];
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    bad.push('page: ' + document.documentElement.scrollWidth + ' px wide in a ' + window.innerWidth + ' px window');
  for (const t of document.querySelectorAll('article table')) {
    let el = t;
    while (el && el.tagName !== 'ARTICLE') {
      if (el.scrollWidth > el.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)) {
        bad.push('table: ' + el.scrollWidth + ' px in ' + el.clientWidth + ' px: ' + (t.innerText || '').slice(0, 60));
        break;
      }
      el = el.parentElement;
    }
  }
  return bad;
}"""
# where the first table sits against the first code a reader sees (folded code is not seen)
FIRST = """() => {
  const seen = e => !e.closest('details:not([open])') && e.getClientRects().length > 0
    && e.getBoundingClientRect().height > 0;
  const table = Array.from(document.querySelectorAll('article table')).find(seen);
  const code = Array.from(document.querySelectorAll('article div.cell_input')).find(seen);
  return {table: table ? table.getBoundingClientRect().top + scrollY : null,
          code: code ? code.getBoundingClientRect().top + scrollY : null};
}"""
NOISE = re.compile(r"\bNaN\b|\b\w*Warning\b:|\bwarnings\.warn|Optimal order is|IProgress not found|not verified offline"
                   r"|read offline here|not recorded: the book was not built")
LAUNCH = "Array.from(document.querySelectorAll('a[href]')).map(a => a.href).filter(h => h.includes('colab.research.google.com'))"
UNRESOLVED = ("{glue", "glue:text", "??", "Unknown glue", "missing glue")


def _download_problems(page, base: str, stem: str) -> list[str]:
    """The chapter's executed notebook is downloadable from its page, with its outputs."""
    import json

    links = page.evaluate(f"Array.from(document.querySelectorAll('a[href$=\"{stem}.ipynb\"]')).map(a => a.href)"
                          ".filter(h => h.startsWith(location.origin))")
    if not links:
        return [f"no download link to {stem}.ipynb"]
    response = page.request.get(links[0])
    if not response.ok:
        return [f"download {links[0]}: HTTP {response.status}"]
    cells = json.loads(response.body())["cells"]
    if not any(c.get("outputs") for c in cells if c["cell_type"] == "code"):
        return [f"the downloadable {stem}.ipynb has no outputs: not the executed notebook"]
    return []


def test_every_page_renders_offline_without_errors(site):
    from playwright.sync_api import sync_playwright

    base, html = site
    shots = html.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    repo = colab_cell.repository_url(ROOT)
    colab_prefix = "https://colab.research.google.com/github/" + repo.split("://", 1)[1].split("/", 1)[1] + "/"
    names = pages(html)
    assert {f"notebooks/{c}.html" for c in CHAPTERS} <= set(names)
    assert _redirect(html / "index.html") in names  # the front page leads to a page checked below
    problems: dict[str, list[str]] = {}
    seen_math = seen_interactive = 0
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            for name in names:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                found: list[str] = []
                page.on("console", lambda m, f=found: f.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
                page.on("pageerror", lambda e, f=found: f.append(f"script error: {e}"))
                page.on("requestfailed", lambda r, f=found: f.append(f"request failed: {r.url}"))
                page.on("response", lambda r, f=found: f.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

                def outside(route, f=found):
                    f.append(f"request leaves the book: {route.request.url}")
                    route.abort()

                page.route(lambda url: not url.startswith(base) and not url.startswith("data:"), outside)
                page.goto(base + name, wait_until="load")
                math = page.evaluate(MATH)
                interactive = page.evaluate("document.querySelectorAll('.miakit-interactive').length")
                seen_interactive += interactive
                if interactive:  # each interactive figure drawn by the book's own plotly.js
                    try:
                        page.wait_for_function("Array.from(document.querySelectorAll('.miakit-interactive'))"
                                               ".every(e => e.querySelector('.js-plotly-plot, .main-svg'))", timeout=15000)
                    except Exception:
                        found.append(f"{interactive} interactive figure(s) not drawn")
                page.wait_for_timeout(200)
                seen_math += math["typeset"]
                if math.get("missing"):
                    found.append(f"{math['math']} math elements but no MathJax on the page")
                elif math["typeset"] < math["math"] or math["errors"]:
                    found.append(f"math: {math}")
                found += [f"image does not decode: {src}" for src in page.evaluate(IMAGES)]
                found += [f"error output: {text}" for text in page.evaluate(ERROR_CELLS)]
                text = page.inner_text("article") if page.query_selector("article") else page.inner_text("body")
                found += [f"unresolved: {w!r}" for w in UNRESOLVED if w in text]
                found += [f"raw TeX left in the text: {w!r}" for w in ("$$", "\\frac", "\\mathrm") if w in text]
                found += [f"cut off at the page edge: {t!r}" for t in page.evaluate(WIDE)]
                found += [f"does not fit the text column at 1280 px: {t}" for t in page.evaluate(SCROLLS)]
                found += [f"noise in the text: {m.group(0)!r} in ...{text[max(0, m.start() - 60):m.end() + 20]!r}"
                          for m in NOISE.finditer(text)][:3]
                if name == "book/intro.html" and not re.search(r"took \d+ minutes on the machine", text):
                    found.append("the build's time is not stated as 'took N minutes on the machine ...'")
                if name == "notebooks/90_claims.html":
                    first = page.evaluate(FIRST)
                    if first["table"] is None or (first["code"] is not None and first["code"] < first["table"]):
                        found.append(f"the overview's table does not come before its first visible code: {first}")
                if name.startswith("notebooks/"):
                    launch = page.evaluate(LAUNCH)
                    stem = Path(name).stem
                    if not launch or any(not h.startswith(colab_prefix) or not h.endswith(f"{stem}.ipynb")
                                         for h in launch):
                        found.append(f"launch buttons {launch} do not point at {colab_prefix}...{stem}.ipynb")
                    found += _download_problems(page, base, stem)
                page.screenshot(path=str(shots / (name.replace("/", "_").removesuffix(".html") + ".png")),
                                full_page=True)
                page.close()
                if found:
                    problems[name] = found
        finally:
            browser.close()
    assert not problems, problems
    assert seen_math > 0, "no page typeset any mathematics"
    assert seen_interactive >= 5, f"{seen_interactive} interactive figures in the book"
    assert len(list(shots.glob("*.png"))) == len(names)


def test_the_page_checks_catch_what_they_look_for(tmp_path):
    """Each in-page check fails on a page built to break it: an image that does not decode, an
    error cell, a table wider than the page, a table that scrolls sideways, code before the first
    table, TeX that MathJax did not typeset, a request that leaves the book; and the text check
    on NaN and warnings."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    (tmp_path / "bad.html").write_text(
        "<html><body><article style='width:400px'>"
        "<img src='missing.png'>"
        "<div class='cell_output'><div class='output traceback'>Traceback: boom</div></div>"
        "<details><summary>folded</summary><div class='cell_input'>folded code</div></details>"
        "<div class='cell_input'>code</div>"
        "<table><tr><td style='white-space:nowrap'>" + "wide " * 200 + "</td></tr></table>"
        "<div style='overflow-x:auto'><table><tr><td style='white-space:nowrap'>" + "scrolls " * 100
        + "</td></tr></table></div>"
        "<div class='math'>$$\\frac{1}{2}$$</div>"
        "<img src='https://example.invalid/x.png'>"
        "</article></body></html>")
    server = http.server.ThreadingHTTPServer((HOST, 0), functools.partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{HOST}:{server.server_address[1]}/"
    left = []
    try:
        with sync_playwright() as pw:
            browser = _launch(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route(lambda url: not url.startswith(base), lambda route: (left.append(route.request.url), route.abort()))
            page.goto(base + "bad.html", wait_until="load")
            broken, errors = page.evaluate(IMAGES), page.evaluate(ERROR_CELLS)
            math, wide = page.evaluate(MATH), page.evaluate(WIDE)
            scrolls, first = page.evaluate(SCROLLS), page.evaluate(FIRST)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert any(src.endswith("missing.png") for src in broken)
    assert errors and "boom" in errors[0]
    assert wide and wide[0].startswith("table: wide")
    assert any(t.startswith("page: ") for t in scrolls) and any("scrolls scrolls" in t for t in scrolls)
    assert first["code"] < first["table"]
    for noise in ("AUC NaN", "UserWarning: x", "Optimal order is the largest alpha", "TqdmWarning: IProgress not found"):
        assert NOISE.search(noise), noise
    assert not NOISE.search("a NaNometre, the Warnings chapter, not measurable")
    assert math.get("missing") and math["math"] == 1
    assert left == ["https://example.invalid/x.png"]
