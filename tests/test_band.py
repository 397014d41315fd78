"""Band tests in the spirit of opacus' accuracy bands: a tiny target that memorises 16 images,
trained here in seconds, must be attacked well by both attacks, and the same target trained for
0 iterations must sit at chance. A sign flip, a broken attack or labels leaking into the scores
cannot pass both."""
import dataclasses

import pytest

from miakit.core import config
from miakit.chapters import loss_and_likelihood
from miakit.training import train


def band_settings(runs_dir, iterations: int):
    return config.resolve("smoke", runs_dir=str(runs_dir), n_members=16, n_nonmembers=200, iterations=iterations,
                          lr=2e-3, batch_size=16, ema_decay=0.99, snapshot_every=0, checkpoint_every=1000)


def attacked(runs_dir, iterations: int):
    run = train.ensure(band_settings(runs_dir, iterations), progress_bar=False)
    loss = loss_and_likelihood.loss_attack_study(run, progress_bar=False, n_steps=11)
    lik = loss_and_likelihood.likelihood_study(run, False, dataclasses.replace(run.settings.likelihood, lik_max_images=16))
    return loss, lik


@pytest.fixture(scope="module")
def runs_dir(band_runs_dir):
    return band_runs_dir


def test_a_memorising_target_is_attacked_well(runs_dir):
    loss, lik = attacked(runs_dir, 400)
    assert loss.chosen().value >= 0.9, loss.chosen().text()  # 8 test members against 100 test nonmembers
    assert lik.estimate.value >= 0.8 and lik.estimate.low > 0.6, lik.estimate.text()  # 16 against 16


def test_an_untrained_target_sits_at_chance(runs_dir):
    loss, lik = attacked(runs_dir, 0)
    assert 0.25 <= loss.chosen().value <= 0.75, loss.chosen().text()
    assert 0.25 <= lik.estimate.value <= 0.75, lik.estimate.text()
