"""The run store on Google Drive (``runs_dir="drive:<folder>"``): refused off Colab and outside
Drive before anything runs; on a (stubbed) Colab, Drive is mounted once and the runs land there."""
import sys
import types

import pytest

from miakit.core import colab, config
from miakit.training import train


def test_a_drive_store_is_refused_off_colab_and_outside_drive():
    with pytest.raises(ValueError, match="needs Google Colab"):
        config.resolve("smoke", runs_dir="drive:miakit-runs")
    for bad in ("drive:", "drive:/", "drive:../escape", "drive:a/../../b"):
        with pytest.raises(ValueError, match="inside your Google Drive"):
            colab.check(bad)
    assert colab.check("runs") is None and str(colab.runs_root("runs")) == "runs"


@pytest.fixture
def stub_colab(tmp_path, monkeypatch):
    """A stand-in for ``google.colab`` whose ``drive.mount`` creates My Drive under tmp_path."""
    mounts = []

    def mount(path):
        mounts.append(path)
        (colab.MOUNT / "MyDrive").mkdir(parents=True)

    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    google.colab.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    monkeypatch.setattr(colab, "MOUNT", tmp_path / "content" / "drive")
    return mounts


def test_on_colab_runs_land_in_my_drive_which_is_mounted_once(stub_colab):
    settings = config.resolve("smoke", runs_dir="drive:miakit-runs", iterations=2, families="ddpm")
    folder = train.run_dir(settings)
    assert folder.parent == colab.MOUNT / "MyDrive" / "miakit-runs"
    run = train.ensure(settings, progress_bar=False)
    assert run.dir == folder and (folder / "final.safetensors").exists()
    assert train.ensure(settings, progress_bar=False).dir == folder  # found again, Drive not remounted
    assert stub_colab == [str(colab.MOUNT)]
