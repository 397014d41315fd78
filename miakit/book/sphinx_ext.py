"""A Sphinx extension for the book (``_config.yml``: ``sphinx.extra_extensions``).

It drops repeated script tags from every page. sphinx-thebe adds its configuration script
(``const THEBE_JS_URL = ...``) each time Sphinx reads the documents, and a Jupyter Book build
reads them twice, so every page declared the constant twice and the browser reported
"Identifier 'THEBE_JS_URL' has already been declared" (found by ``tests/test_browser.py``).
"""
from __future__ import annotations


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats, in their order. Two scripts are the same when their file
    (``None`` and ``""`` both meaning an inline script: sphinx-thebe's two adds differ so),
    priority and attributes (the inline body among them) are."""
    out, seen = [], set()
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""), getattr(script, "priority", 0),
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            out.append(script)
    return out


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(list(context["script_files"]))


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)  # after the themes and extensions added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
