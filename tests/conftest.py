import pytest
import torch

torch.set_num_threads(2)


# fixtures that train several targets (module- or session-scoped): a test that uses one is ``heavy``
HEAVY_FIXTURES = {"smoke_study", "smoke_bench", "band_runs", "band_runs_dir"}


def pytest_collection_modifyitems(items):
    """A test that reads the smoke book (the ``built_book`` fixture: every notebook executed, the
    HTML built) is marked ``book``, one that uses a fixture training several targets ``heavy``:
    ``make test-fast`` leaves both out."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "built_book" in names:
            item.add_marker(pytest.mark.book)
        if names & HEAVY_FIXTURES:
            item.add_marker(pytest.mark.heavy)


@pytest.fixture(autouse=True)
def _fresh_dataset_memo():
    """Every test starts without the packaged datasets ``miakit.core.data.load`` keeps per process,
    so a test that replaces a loader (monkeypatch) reads through it."""
    from miakit.core import data

    data._MEMO.clear()
    yield
    data._MEMO.clear()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One trained smoke-profile target, shared by the tests that need a real model."""
    from miakit.core import config
    from miakit.training import train

    settings = config.resolve("smoke", runs_dir=str(tmp_path_factory.mktemp("runs")))
    return train.ensure(settings, progress_bar=False)


@pytest.fixture(scope="session")
def band_runs_dir(tmp_path_factory):
    """The store of the band tests' targets (a memorising one and its untrained twin), shared by
    the paper's attacks (test_band) and the later ones (test_later_attacks)."""
    return tmp_path_factory.mktemp("band")


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The smoke book, every notebook executed and the HTML built (strict, offline), once per
    session: the notebook tests read its executed notebooks, the browser test its pages.

    ``MIAKIT_BUILT_BOOK`` names a book built already (its staging folder, e.g. ``_staging`` after
    ``make book``): the browser test then checks that book's pages, say the cpu one, without
    building the smoke book."""
    import json
    import os
    from pathlib import Path

    from miakit.book import build

    if os.environ.get("MIAKIT_BUILT_BOOK"):
        given = Path(os.environ["MIAKIT_BUILT_BOOK"]).resolve()
        if not (given / "_build" / "html").is_dir():
            raise pytest.UsageError(f"MIAKIT_BUILT_BOOK={given}: no _build/html there; build the book first")
        return given
    root = Path(__file__).resolve().parents[1]
    stage = tmp_path_factory.mktemp("stage")
    runs = tmp_path_factory.mktemp("runs")
    build.main(["--profile", "smoke", "-p", f"runs_dir={json.dumps(str(runs))}", "--root", str(root), "--workers", "2", "--side-by-side", "2",
               "--stage", str(stage)])
    return stage
