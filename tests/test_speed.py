"""The paper-style likelihood loop and the side-by-side timing the book shows (P2)."""
import math

import numpy as np
import pytest
import torch

from miakit.core import config
from miakit import diffusion
from miakit.evidence import speed
from miakit.diffusion.likelihood import likelihood
from test_families import DATA_STD, exact_model, gaussian_logp


@pytest.fixture(scope="module", params=["ddpm", "vesde"])
def target(request):
    """The exact score of N(0, DATA_STD^2) data, so every likelihood has a closed form."""
    fam = diffusion.family(request.param)
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * DATA_STD
    return exact_model(fam), fam, x


def test_paper_loop_gives_the_closed_form_and_agrees_with_the_batched_likelihood(target):
    model, fam, x = target
    bpd, nfe = speed.paper_likelihood(model, fam, x)
    closed_form = -gaussian_logp(x) / (16 * math.log(2)) + 7
    ours = likelihood(model, fam, x, rtol=1e-5, atol=1e-5, progress_bar=False)
    assert (nfe > 20).all()
    assert np.abs(bpd - closed_form).max() < 0.005, (bpd, closed_form)
    assert np.abs(bpd - ours.bpd).max() < 0.005, (bpd, ours.bpd)


def test_paper_loop_uses_each_image_s_own_probe(target):
    """Swapping the images swaps the results: the probe belongs to the position, as in ours."""
    model, fam, x = target
    a, _ = speed.paper_likelihood(model, fam, x, rtol=1e-3, atol=1e-3)
    b, _ = speed.paper_likelihood(model, fam, x[:1], rtol=1e-3, atol=1e-3)
    assert a[0] == pytest.approx(b[0])


def test_likelihood_speed_reports_every_setting_and_a_verdict(target):
    model, fam, x = target
    settings = speed.profile_settings("dopri5", 1e-2, 1e-2)
    assert len(settings) == 2 and len(speed.profile_settings("dopri5", 1e-5, 1e-5)) == 1
    result = speed.likelihood_speed(model, fam, x, settings, x_batch=x.repeat(2, 1, 1, 1))
    table = result.table()
    assert len(table) == 1 + 2 * len(settings)  # paper loop, each setting, each on a batch
    for name in settings:
        row = result.row(name)
        assert row.mean_dbpd is not None and row.ratio > 0 and row.nfe_per_image > 0
        expected = result.best_ratio(name) >= speed.P2_RATIO and row.mean_dbpd <= speed.P2_MEAN_DBPD
        assert result.meets_p2(name) == expected
        assert table.loc[name, "meets P2"] == ("yes" if expected else "no")
    assert result.paper.mean_dbpd is None and table.iloc[0]["meets P2"] == ""
    assert set(result.headline()) >= {"ratio", "dbpd", "ms_ours", "ms_paper", "nfe_ours", "nfe_paper"}


@pytest.mark.heavy
def test_dp_step_speed_times_the_loops_own_steps_and_verifies_gradients(tmp_path):
    s = config.resolve("smoke", runs_dir=str(tmp_path), trainer="dp-sgd", dp_epsilon=10.0, batch_size=4,
                       dp_physical_batch=4, n_members=16)
    members = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = speed.dp_step_speed(s, members, rounds=1)
    assert set(result.ms) == {speed.ORDINARY, *speed.DP_ENGINES} and all(v > 0 for v in result.ms.values())
    assert all(result.verified[name] for name in speed.DP_ENGINES)
    assert result.meets_p3() == (result.ratio(speed.TRAINED) <= speed.P3_RATIO)
    table = result.table()
    assert table.loc[speed.ORDINARY, "x ordinary step"] == 1.0
    assert table.loc[speed.TRAINED, "per-example gradients"] == "verified"
    assert result.headline()["met"] in ("yes", "no")
    with pytest.raises(ValueError, match="dp-sgd"):
        speed.dp_step_speed(config.resolve("smoke", runs_dir=str(tmp_path)), members, rounds=1)

