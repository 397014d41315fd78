"""The run manifest of the book's appendix (miakit.book.manifest)."""
import subprocess

import torch

from miakit.core import config
from miakit.book import manifest


def test_the_manifest_names_versions_commit_device_precision_and_seeds():
    settings = config.resolve("smoke", train_seed=7, n_seeds=3)
    frame = manifest.table(settings)
    value = frame["value"]
    assert value[("build", "profile")] == "smoke"
    assert value[("packages", "torch")] == torch.__version__
    assert value[("hardware", "device")] == "cpu" and value[("hardware", "precision")] == "float32"
    assert value[("seeds", "training seeds of the comparisons")] == "7, 8, 9"
    head = value[("build", "commit")].split()[0]
    assert len(head) == 40 and int(head, 16) >= 0


def test_the_commit_says_when_the_tree_differs_from_it(tmp_path):
    assert manifest.commit(tmp_path) == "unknown (not a git checkout)"
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("one")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = manifest.commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "f.txt").write_text("two")
    assert manifest.commit(tmp_path) == clean + " (plus uncommitted changes)"
