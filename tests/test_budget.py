"""The budget counts the trainings the chapters really run: on the smoke profile, the run folders
that chapters 01, 04 and 06 create are exactly the trainings ``miakit.chapters.budget`` lists for them
(count, iterations and batch of each)."""
import json

import pytest

from miakit.chapters import benchmark, budget, factors
from miakit.core import config
from miakit.training import train


@pytest.mark.heavy
def test_budget_lists_the_trainings_the_chapters_make(tmp_path):
    settings = config.resolve("smoke", runs_dir=str(tmp_path))
    train.ensure_all(settings, progress_bar=False)  # chapter 01
    lead = settings.for_family("ddpm")
    factors.size_study(lead, progress_bar=False)  # chapter 04
    factors.length_study(lead, progress_bar=False)
    for family in settings.family_names():  # chapter 06
        train.ensure_references(settings.for_family(family), progress_bar=False)
    benchmark.ensure_targets(settings, progress_bar=False)  # chapter 06's benchmark regime
    made = {cfg.parent.name for cfg in tmp_path.glob("*/config.json")}
    listed = [train.run_dir(t.settings, reference=t.reference).name for t in budget.trainings(settings)
              if t.chapter in ("01", "04", "06")]
    # the same runs, each listed once: a target per family, 3 more of chapter 04, a reference and a
    # benchmark target per family
    n = len(settings.family_names())
    assert made == set(listed) and len(listed) == len(made) == n + 3 + n + n


def test_budget_table_sums_image_steps_and_weights_private_steps():
    settings = config.resolve("smoke")
    frame = budget.table(settings, seconds_per_image_step=1.0, private_factor=3.0)
    trainings = budget.trainings(settings)
    assert frame["trainings"].sum() == len(trainings)
    private = sum(t.image_steps for t in trainings if t.private)
    ordinary = sum(t.image_steps for t in trainings if not t.private)
    assert private > 0 and frame["DP-SGD image-steps"].sum() == private
    assert abs(frame["hours"].sum() - (ordinary + 3.0 * private) / 3600) < 0.1


@pytest.mark.heavy
def test_gpu_check_dry_run_times_a_step_and_an_attack_batch_and_prints_hours(tmp_path, capsys):
    """``make gpu-check`` on the CPU (``--device cpu``), at the smoke profile: it times one
    training step and one attack batch and turns the step time into hours per chapter."""
    import importlib.util

    from miakit.core import config

    path = config.__file__.replace("miakit/core/config.py", "scripts/gpu_check.py")
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--profiles", "smoke", "--skip-book", "--repeats", "1",
                           "--out", str(out)]) == 0
    report = json.loads(out.read_text())["smoke"]
    assert report["step_seconds"] > 0 and report["attack_seconds"] > 0 and report["batch_size"] == 16
    expected = budget.table(config.resolve("smoke"), seconds_per_image_step=report["seconds_per_image_step"])
    assert report["hours per chapter"] == expected["hours"].to_dict()
    assert "ms per training step of 16" in capsys.readouterr().out


def _store(folder):
    """run folder name -> its final tensors."""
    from safetensors.torch import load_file

    return {f.parent.name: load_file(f) for f in folder.glob("*/final.safetensors")}


@pytest.mark.heavy
def test_targets_trained_on_an_executor_make_the_store_a_sequential_build_makes(tmp_path):
    """``ensure_all`` on a process pool and on a dask LocalCluster: the same run folders as a
    sequential build, holding the same weights, bit for bit (each training is seeded alone; the
    workers use this process's number of intra-op threads, which orders the CPU's reductions)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch
    from distributed import Client, LocalCluster

    def settings(name):
        return config.resolve("smoke", families="ddpm,smld", iterations=10, runs_dir=str(tmp_path / name))

    sequential = train.ensure_all(settings("sequential"), progress_bar=False)
    threads = torch.get_num_threads()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        pooled = train.ensure_all(settings("pool"), progress_bar=False, executor=pool)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(torch.set_num_threads, threads)
        dasked = train.ensure_all(settings("dask"), progress_bar=False, executor=client.get_executor())
    reference = _store(tmp_path / "sequential")
    assert len(reference) == 2 and [r.dir.name for r in sequential.values()] == [r.dir.name for r in pooled.values()]
    for name in ("pool", "dask"):
        other = _store(tmp_path / name)
        assert other.keys() == reference.keys()
        for run, tensors in reference.items():
            assert all(torch.equal(tensors[k], other[run][k]) for k in tensors), (name, run)


def test_a_negative_worker_count_is_refused_before_anything_is_staged(tmp_path):
    import pytest

    from miakit.book import build

    with pytest.raises(SystemExit):
        build.main(["--profile", "smoke", "--workers", "-1", "--stage", str(tmp_path / "stage")])
    assert not (tmp_path / "stage").exists()


def _notebook(path, source):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.heavy
def test_notebooks_side_by_side_run_after_what_they_wait_for_and_single_threaded(tmp_path):
    """Two workers: the back matter starts only once every chapter is done, every kernel has one
    torch thread, and the seconds of every notebook come back."""
    from miakit.book import build

    root, stage = tmp_path / "root", tmp_path / "stage"
    (root / "notebooks").mkdir(parents=True)
    _notebook(root / "notebooks" / "01_a.ipynb", "import time, torch; time.sleep(3)\n"
              "open('a.txt', 'w').write(str(torch.get_num_threads()))")
    _notebook(root / "notebooks" / "02_b.ipynb", "open('b.txt', 'w').write('b')")
    _notebook(root / "notebooks" / "90_c.ipynb", "import os\nassert os.path.exists('a.txt') and os.path.exists('b.txt')\n"
              "open('c.txt', 'w').write('c')")
    timings = build.execute(root, stage, "smoke", {}, workers=2)
    assert list(timings) == ["01_a", "02_b", "90_c"] and all(v > 0 for v in timings.values())
    assert (root / "a.txt").read_text() == "1" and (root / "c.txt").exists()
    assert (stage / "notebooks" / "90_c.ipynb").exists() and (stage / "logs" / "90_c.log").exists()


@pytest.mark.heavy
def test_a_failing_notebook_side_by_side_stops_the_build_and_names_itself(tmp_path):
    import pytest

    from miakit.book import build

    root, stage = tmp_path / "root", tmp_path / "stage"
    (root / "notebooks").mkdir(parents=True)
    _notebook(root / "notebooks" / "01_a.ipynb", "import time; time.sleep(60)\nopen('a.txt', 'w').write('a')")
    _notebook(root / "notebooks" / "02_b.ipynb", "raise ValueError('broken chapter')")
    _notebook(root / "notebooks" / "90_c.ipynb", "open('c.txt', 'w').write('c')")
    with pytest.raises(SystemExit, match="02_b.ipynb failed") as err:
        build.execute(root, stage, "smoke", {}, workers=2)
    assert "broken chapter" in str(err.value)
    assert not (root / "c.txt").exists() and not (root / "a.txt").exists()  # the other was stopped, the back matter never ran


def test_the_run_order_names_real_notebooks_and_starts_what_others_wait_for():
    from pathlib import Path

    from miakit.book import build

    stems = [nb.stem for nb in build.notebooks(Path(__file__).resolve().parents[1])]
    from miakit.chapters import book_chapters

    assert all(name in stems for chapter in book_chapters() for name in (chapter.notebook, *chapter.after))
    order = build.run_order(stems)
    assert order[0] == "02_loss_attack" and order[-1] == "90_claims"
    assert build.waits_for("90_claims", stems) == [s for s in stems if s.startswith("0")]
    assert build.waits_for("05_differential_privacy", stems) == []


@pytest.mark.heavy
def test_a_kernel_that_dies_at_startup_is_started_once_more_and_a_second_death_stops_the_build(tmp_path, monkeypatch):
    """A kernel that exits before it replies (as chapter 05's once did in CI) is not the
    notebook's fault: its run starts once more and the build goes on; a kernel that keeps dying
    stops the build with its log. The kernel is a real ``python3`` kernelspec (found first on
    ``JUPYTER_PATH``) that exits while a count file says it should."""
    import json
    import sys

    from miakit.book import build

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    deaths = tmp_path / "deaths"
    code = (f"import pathlib, sys; p = pathlib.Path({str(deaths)!r}); n = int(p.read_text())\n"
            "if n > 0:\n    p.write_text(str(n - 1)); sys.exit(1)\n"
            "import runpy; sys.argv = ['ipykernel_launcher', '-f', *sys.argv[1:]]\n"
            "runpy.run_module('ipykernel_launcher', run_name='__main__')")
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-c", code, "{connection_file}"],
                                                  "display_name": "Python 3 (dies first)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    root, stage = tmp_path / "root", tmp_path / "stage"
    (root / "notebooks").mkdir(parents=True)
    _notebook(root / "notebooks" / "01_a.ipynb", "open('a.txt', 'w').write('a')")
    _notebook(root / "notebooks" / "02_b.ipynb", "open('b.txt', 'w').write('b')")
    deaths.write_text("1")
    timings = build.execute(root, stage, "smoke", {}, workers=2)
    assert list(timings) == ["01_a", "02_b"] and (root / "a.txt").exists() and (root / "b.txt").exists()
    assert deaths.read_text() == "0"  # one kernel did die, and its notebook still ran
    (root / "a.txt").unlink()
    deaths.write_text("1")  # one notebook after another (in this process, through papermill's API): the same
    assert list(build.execute(root, stage, "smoke", {}, workers=0)) == ["01_a", "02_b"]
    assert deaths.read_text() == "0" and (root / "a.txt").exists()
    deaths.write_text("9")
    with pytest.raises(SystemExit, match=r"failed \(exit") as err:
        build.execute(root, stage, "smoke", {}, workers=2)
    assert build.failed_at_startup(str(err.value))
    assert not build.failed_at_startup("ValueError: broken chapter")


@pytest.mark.parametrize("on_cpu,expected", [(True, 2), (False, 1)])
def test_the_build_runs_notebooks_side_by_side_only_on_a_cpu(tmp_path, monkeypatch, on_cpu, expected):
    """``--side-by-side 2`` (what ``make book`` passes) reaches the executor on a CPU; on a GPU the
    kernels would share its memory, so the notebooks run one after another."""
    from pathlib import Path

    from miakit.book import build

    seen = {}
    monkeypatch.setattr(build, "_on_cpu", lambda settings: on_cpu)
    monkeypatch.setattr(build, "execute", lambda root, stage, profile, parameters, only, workers:
                        seen.setdefault("workers", workers) and {})
    root = Path(__file__).resolve().parents[1]
    build.main(["--profile", "smoke", "--root", str(root), "--stage", str(tmp_path / "stage"), "--no-html",
                "--side-by-side", "2", "--only", "01_targets"])
    assert seen["workers"] == expected


class _FakePool:
    """A training pool whose trainings sleep and record when they ran (``train.submit`` calls
    ``submit(ensure_in_worker, settings_json, reference)``); the one named ``fail`` raises."""

    def __init__(self, log, seconds=1.5, fail=None):
        from concurrent.futures import ThreadPoolExecutor

        self.threads, self.log, self.seconds, self.fail = ThreadPoolExecutor(4), log, seconds, fail

    def submit(self, fn, flat_settings, reference):
        import time

        def job():
            began = time.time()
            time.sleep(self.seconds)
            if reference == self.fail:
                raise RuntimeError("out of memory")
            self.log.append((reference, began, time.time()))
        return self.threads.submit(job)


def _timed_notebook(root, stem):
    _notebook(root / "notebooks" / f"{stem}.ipynb", f"import time\nbegan = time.time()\ntime.sleep(1)\n"
              f"open({stem + '.txt'!r}, 'w').write(f'{{began}} {{time.time()}}')")


@pytest.mark.heavy
def test_trainings_run_beside_the_notebooks_and_each_notebook_starts_once_its_chapters_are_trained(tmp_path):
    """Trainings and notebooks share the slots (never more jobs at once than the larger of the two
    counts); a chapter's notebook starts only after the trainings of the chapters it loads (its
    own and ``Chapter.loads``) and the back matter after every training; each training's seconds
    come back; chapter 05's notebook, which loads only chapter 05's targets, starts before chapter
    06's trainings are done."""
    from miakit.book import build
    from miakit.chapters.contract import Training

    root, stage = tmp_path / "root", tmp_path / "stage"
    (root / "notebooks").mkdir(parents=True)
    for stem in ("01_targets", "05_differential_privacy", "06_later_attacks", "90_claims"):
        _timed_notebook(root, stem)
    smoke = config.resolve("smoke")
    plan = [Training("01", "a", smoke, 0), Training("01", "b", smoke, 1), Training("05", "c", smoke, 2),
            Training("06", "d", smoke, 3), Training("06", "e", smoke, 4), Training("06", "f", smoke, 5)]
    log, trained = [], {}
    timings = build.execute(root, stage, "smoke", {}, workers=2, trainings=plan, pool=_FakePool(log), train_workers=2,
                            trained=trained)
    assert set(timings) == {"01_targets", "05_differential_privacy", "06_later_attacks", "90_claims"}
    assert set(trained) == {f"{tr.chapter} {tr.what}" for tr in plan} and all(v > 0 for v in trained.values())
    ended = {ref: end for ref, _, end in log}
    ran = {stem: tuple(map(float, (root / f"{stem}.txt").read_text().split())) for stem in timings}
    assert ran["01_targets"][0] > max(ended[0], ended[1])
    assert ran["05_differential_privacy"][0] > ended[2]
    assert ran["06_later_attacks"][0] > max(ended[r] for r in (0, 1, 3, 4, 5))
    assert ran["90_claims"][0] > max(ended.values()) and ran["90_claims"][0] > max(e for _, e in ran.values() if e != ran["90_claims"][1])
    assert ran["05_differential_privacy"][0] < max(ended[r] for r in (3, 4, 5))  # it did not wait for chapter 06's
    intervals = [(b, e) for _, b, e in log] + list(ran.values())
    assert max(sum(b <= at < e for b, e in intervals) for at, _ in intervals) <= 2


@pytest.mark.heavy
def test_a_failing_training_stops_the_build_and_names_itself(tmp_path):
    from miakit.book import build
    from miakit.chapters.contract import Training

    root, stage = tmp_path / "root", tmp_path / "stage"
    (root / "notebooks").mkdir(parents=True)
    _timed_notebook(root, "90_claims")
    smoke = config.resolve("smoke")
    plan = [Training("01", "target ddpm", smoke, 0), Training("04", "size 50", smoke, 1)]
    with pytest.raises(SystemExit, match=r"training size 50 \(chapter 04\) failed: RuntimeError: out of memory"):
        build.execute(root, stage, "smoke", {}, workers=2, trainings=plan, pool=_FakePool([], fail=1), train_workers=2)
    assert not (root / "90_claims.txt").exists()


def test_the_trainings_start_chapter_by_chapter_dearest_first_and_notebooks_load_their_chapters():
    from pathlib import Path

    from miakit.book import build

    settings = config.resolve("cpu")
    order = budget.in_book_order(settings)
    assert sorted(order, key=lambda tr: tr.chapter) == order and len(order) == len(budget.trainings(settings))
    for chapter in {tr.chapter for tr in order}:
        costs = [budget.cost(tr) for tr in order if tr.chapter == chapter]
        assert costs == sorted(costs, reverse=True)
    assert {tr.chapter for tr in budget.in_book_order(settings, {"05"})} == {"05"}
    assert build.loads("07_defenses") == ("07", "05") and build.loads("90_claims") is None
    stems = [nb.stem for nb in build.notebooks(Path(__file__).resolve().parents[1])]
    assert build.chapters_loaded(stems) is None and build.chapters_loaded(["02_loss_attack", "07_defenses"]) == {"02", "01", "07", "05"}
