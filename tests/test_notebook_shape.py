"""Notebooks hold no logic: each is its parameters, one setup cell that makes one chapter call,
display cells that each call one method of the result (no indexing, no arguments, no arithmetic)
and one glue call (``report.glue_chapter``). Checked on the jupytext sources with ``ast``."""
import ast
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
SETUP_CALLS = {"from_namespace", "globals", "Stopwatch"}  # besides the one chapter call


def code_cells(path):
    nb = jupytext.read(path)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "parameters" in tags or "google.colab" in cell.source:
            continue
        yield cell.source


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def problems(sources: list[str]) -> list[str]:
    """What breaks the shape, cell by cell (empty when the notebook is parameters, one call,
    displays and one glue call)."""
    out, result = [], None
    for i, source in enumerate(sources):
        tree = ast.parse(source)
        if i == 0:  # the setup cell: imports, settings, clock, and one chapter call bound to a name
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) not in SETUP_CALLS]
            bound = [s for s in tree.body if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call)
                     and _call_name(s.value) not in SETUP_CALLS]
            extra = [s for s in tree.body if isinstance(s, ast.Expr)]
            if len(calls) - len(extra) != 1 or len(bound) != 1:
                out.append(f"cell {i}: the setup makes {len(calls) - len(extra)} chapter calls, not one")
                continue
            result = bound[0].targets[0].id
            tree.body = extra  # a display of the result may end the setup cell
            if not extra:
                continue
        for stmt in tree.body:
            call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
            if call and _call_name(call) == "glue_chapter" and [ast.unparse(a) for a in call.args][:1] == [result]:
                continue
            if not (call and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
                    and call.func.value.id == result and not call.args and not call.keywords):
                out.append(f"cell {i}: {ast.unparse(stmt)!r} is not one method call on {result}")
    glue = sum("glue_chapter" in s for s in sources)
    if glue != 1:
        out.append(f"{glue} glue_chapter calls, not one")
    return out


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_parameters_one_call_displays_and_one_glue_call(source):
    assert problems(list(code_cells(source))) == []


def test_the_shape_check_fails_on_a_cell_that_digs_into_results():
    good = ["import miakit\nsettings = miakit.core.config.from_namespace(globals())\nchapter = x.run(settings)",
            "chapter.table()", "report.glue_chapter(chapter, clock)"]
    assert problems(good) == []
    assert problems([good[0], "chapter.loss['ddpm'].chosen()", good[2]])  # indexes into a result
    assert problems([good[0], "plots.roc_grid(chapter.runs)", good[2]])  # logic outside miakit
    assert problems([good[0], "chapter.table()", "report.glue('x', 1)"])  # no glue_chapter
    assert problems([good[0] + "\nother = y.run(settings)", good[1], good[2]])  # two chapter calls
