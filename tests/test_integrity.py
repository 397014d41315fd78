"""The run store's integrity (issue 22): every file it reads is checked, every result it computes
survives a read-only store, its files are readable as the umask says, every writer's temporary
file is recognised, and bad values are refused before work starts with the fix in the message.
Each test here failed on the store as it was before."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from miakit.book import build
from miakit.core import config, store
from miakit.attacks import scoring
from miakit.training import train

ROOT = Path(__file__).resolve().parents[1]


def trained(tmp_path, **kw):
    s = config.resolve("smoke", **{"runs_dir": str(tmp_path), "iterations": 20, "checkpoint_every": 10,
                                   "snapshot_every": 10, **kw})
    return s, train.ensure(s, progress_bar=False)


# --- checked metadata --------------------------------------------------------------------------

def test_one_changed_digit_in_split_json_is_refused_naming_the_file(tmp_path):
    s, run = trained(tmp_path)
    path = run.dir / "split.json"
    text = path.read_text()
    member, nonmember = int(run.split.members_test[0]), int(run.split.nonmembers_test[0])
    payload = json.loads(text)
    payload["members_test"][0] = nonmember  # an image the target never saw would count as a member
    payload["nonmembers_test"][0] = member
    edited = {k: v for k, v in payload.items() if k != store.JSON_CHECKSUM}
    path.write_text(json.dumps({**edited, store.JSON_CHECKSUM: payload[store.JSON_CHECKSUM]}, indent=1))
    with pytest.raises(store.CorruptRunError, match=r"split\.json does not match its checksum"):
        train.ensure(s, progress_bar=False)
    # an edit that also rewrites the checksum is refused too: the split is a seeded draw, redrawn and compared
    store.write_json(path, edited)
    with pytest.raises(store.CorruptRunError, match=r"split\.json does not hold the split these settings draw"):
        train.ensure(s, progress_bar=False)


def test_a_flipped_bit_in_history_json_and_binary_junk_are_the_store_s_error(tmp_path):
    s, run = trained(tmp_path)
    path = run.dir / "history.json"
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"iterations": 20') + len(b'"iterations": ')
    raw[at] ^= 0x01  # "20" -> "30": one bit
    path.write_bytes(bytes(raw))
    with pytest.raises(store.CorruptRunError, match=r"history\.json does not match its checksum"):
        train.ensure(s, progress_bar=False)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    with pytest.raises(store.CorruptRunError, match=r"history\.json is not valid JSON"):
        train.ensure(s, progress_bar=False)


def test_a_json_file_without_a_checksum_is_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(store.CorruptRunError, match="carries no checksum"):
        store.read_json(tmp_path / "x.json")
    store.write_json(tmp_path / "y.json", {"a": [1, 2.5], "b": "c"})
    assert store.read_json(tmp_path / "y.json") == {"a": [1, 2.5], "b": "c"}


def test_an_early_snapshot_copied_over_the_final_weights_is_refused(tmp_path):
    s, run = trained(tmp_path)
    shutil.copy(run.dir / train.SNAPSHOTS / "ema-00000010.safetensors", run.dir / train.FINAL)
    with pytest.raises(store.CorruptRunError, match=r"final\.safetensors holds the weights after iteration '10', "
                                                    r"not 20"):
        train.ensure(s, progress_bar=False)


def test_cached_scores_are_reused_only_with_the_weights_they_were_computed_from(tmp_path):
    s, run = trained(tmp_path)
    first = scoring.score_split(run, "sima", progress_bar=False).scores["members_test"]
    again = scoring.score_split(train.ensure(s, progress_bar=False), "sima", progress_bar=False).scores
    assert np.array_equal(again["members_test"], first)  # the same weights: the cache is read
    # other weights under the same run key and iteration (a retrained or replaced file): recomputed
    tensors = store.read_tensors(run.dir / train.FINAL)
    meta = {k: v for k, v in store.read_metadata(run.dir / train.FINAL).items() if k != store.CHECKSUM}
    store.write_tensors(run.dir / train.FINAL, {k: v * 1.5 if v.is_floating_point() else v
                                                for k, v in tensors.items()}, meta)
    changed = scoring.score_split(train.ensure(s, progress_bar=False), "sima", progress_bar=False).scores
    assert not np.allclose(changed["members_test"], first)
    assert len(list(run.dir.glob("attack-sima-*.safetensors"))) == 2


# --- files readable as the umask says; every writer's temporary file ----------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_tensor_and_json_files_take_their_mode_from_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        store.write_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(2)})
        store.write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct((tmp_path / "t.safetensors").stat().st_mode & 0o777) == oct(mode)
    assert oct((tmp_path / "x.json").stat().st_mode & 0o777) == oct(mode)


def test_a_write_leaves_no_temporary_file_of_a_library_and_old_foreign_ones_are_orphans(tmp_path):
    store.write_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(4)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]
    old, fresh = tmp_path / ".tmpAb12Cd", tmp_path / ".tmpZz99Yy"  # safetensors' save_file names (older stores)
    old.write_bytes(b"x" * 100)
    fresh.write_bytes(b"x")
    hour_ago = time.time() - store.FOREIGN_TMP_AGE - 60
    os.utime(old, (hour_ago, hour_ago))
    assert store.clean_orphans(tmp_path) == [old]
    assert fresh.exists() and not old.exists()


# --- results survive a read-only store -----------------------------------------------------------

READ_ONLY_CHILD = r"""
import sys, warnings
from pathlib import Path
import numpy as np
from miakit.core import config
from miakit.attacks import scoring
from miakit.training import train

runs = Path(sys.argv[1])
try:
    (runs / "probe").write_text("x")
except PermissionError:
    pass
else:
    raise SystemExit("the store is writable: the test would prove nothing")
s = config.resolve("smoke", runs_dir=str(runs), iterations=20, checkpoint_every=10, snapshot_every=10)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    run = train.ensure(s, progress_bar=False)
    sima = scoring.score_split(run, "sima", progress_bar=False).scores
    samples = run.samples(4, n_steps=5)
assert sima["members_test"].shape[0] == len(run.split.members_test) and np.isfinite(sima["members_test"]).all()
assert samples.shape[0] == 4
kept = [str(w.message) for w in caught if "not cached" in str(w.message) or "not exported" in str(w.message)]
print("WARNINGS", len(kept))
"""


@pytest.mark.heavy
def test_a_real_read_only_store_returns_every_result_with_a_warning(tmp_path):
    s, run = trained(tmp_path / "runs")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    command = [sys.executable, "-c", READ_ONLY_CHILD, str(tmp_path / "runs")]
    if os.geteuid() == 0:  # permissions do not bind root: run the child without the capabilities that bypass them
        assert shutil.which("setpriv"), "util-linux's setpriv is needed to test a read-only store as root"
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                   "--"] + command
    for p in [tmp_path / "runs", *(tmp_path / "runs").rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        for p in [tmp_path / "runs", *(tmp_path / "runs").rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "WARNINGS" in child.stdout and int(child.stdout.split("WARNINGS")[1].split()[0]) >= 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing was written


# --- bad values refused before work starts, with the fix in the message ---------------------------

def test_learning_rates_outside_a_sane_range_are_refused():
    for lr in (1e39, 1e30, 2.0, 0.0, -1e-3):
        with pytest.raises(ValueError, match=r"lr=.* is outside \(0, 1\]"):
            config.resolve("smoke", lr=lr)
    config.resolve("smoke", lr=1.0)


def test_a_cuda_device_this_machine_does_not_have_is_refused_at_validation():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"device='cuda:{count}' but this machine has {count} CUDA device"):
        config.resolve("smoke", device=f"cuda:{count}")
    if count == 0:
        with pytest.raises(ValueError, match="use device=auto"):
            config.resolve("smoke", device="cuda")


def test_the_book_refuses_an_unknown_chapter_and_a_profile_parameter_before_anything_runs(tmp_path, capsys):
    stage = tmp_path / "stage"
    with pytest.raises(SystemExit):
        build.main(["--profile", "smoke", "--root", str(ROOT), "--stage", str(stage), "--no-html",
                   "--only", "06_later_atacks"])
    assert "not a notebook of this book" in capsys.readouterr().err and not stage.exists()
    with pytest.raises(SystemExit):
        build.main(["--profile", "smoke", "-p", "profile=gpu", "--root", str(ROOT), "--stage", str(stage), "--no-html"])
    assert "pass --profile gpu" in capsys.readouterr().err and not stage.exists()


@pytest.mark.parametrize("inside", ["book/staged", "book", "somewhere/else"])
def test_a_stage_inside_the_checkout_is_refused_before_anything_is_copied(tmp_path, inside):
    root = tmp_path / "checkout"
    for name in ("book", "notebooks"):
        (root / name).mkdir(parents=True)
    (root / "book" / "intro.md").write_text("# intro")
    for name in build.ROOT_FILES:
        (root / name).write_text("x: 1\n")
    with pytest.raises(SystemExit, match="inside"):
        build.main(["--profile", "smoke", "--root", str(root), "--stage", str(root / inside), "--no-html", "--only"])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "_config.yml", "_toc.yml", "book", "book/intro.md", "notebooks"]
