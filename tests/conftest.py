import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One trained smoke-profile target, shared by the tests that need a real model."""
    from miakit import config, train

    settings = config.resolve("smoke", runs_dir=str(tmp_path_factory.mktemp("runs")))
    return train.ensure(settings, progress_bar=False)


@pytest.fixture(scope="session")
def band_runs_dir(tmp_path_factory):
    """The store of the band tests' targets (a memorising one and its untrained twin), shared by
    the paper's attacks (test_band) and the later ones (test_later_attacks)."""
    return tmp_path_factory.mktemp("band")
