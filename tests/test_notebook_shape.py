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


def parameter_lines(path) -> list[str]:
    nb = jupytext.read(path)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]


def typing_problems(lines: list[str]) -> list[str]:
    """Parameter lines that papermill cannot show with their knob's type (``config.knobs``)."""
    from papermill.translators import PythonTranslator

    from miakit.core import config
    knobs, out = config.knobs(), []
    for line in lines:
        m = PythonTranslator.PARAMETER_PATTERN.match(line)
        name = m and m.group("target")
        want = "str" if name == "profile" else knobs[name].type if name in knobs else None
        if want is None:
            out.append(f"{line!r}: not a parameter")
        elif (m.group("annotation") or "").strip() != want:
            out.append(f"{line!r}: papermill shows its type as {m.group('annotation')}, the knob is {want}")
    return out


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_parameter_carries_its_knob_s_type_for_papermill(source):
    """``papermill --help-notebook`` shows each parameter's type (it read "Unknown type" before);
    the values are the profile's, listed by ``python -m miakit --profile P``."""
    lines = parameter_lines(source)
    assert lines and not typing_problems(lines)
    assert len(typing_problems(["n_members = None", "lr: int = None", "n_member: int = None"])) == 3  # each caught


def test_python_m_miakit_lists_each_profile_s_values(capsys):
    from miakit.core import config
    config.main(["--profile", "smoke", "n_members", "lr"])
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"n_members: int = {config.resolve('smoke').data.n_members!r}",
                       f"lr: float = {config.resolve('smoke').target.lr!r}"]
    rows = config.listing("cpu")
    assert [r[0] for r in rows] == list(config.PARAMETERS)
    assert dict((r[0], r[2]) for r in rows)["dp_n_members"] == config.resolve("cpu").privacy_study.dp_n_members
    assert config.knobs()["val_fraction"].help == "share of members/nonmembers used to choose attack settings"
    with pytest.raises(ValueError, match="unknown parameter"):
        config.listing("cpu", ["n_member"])
