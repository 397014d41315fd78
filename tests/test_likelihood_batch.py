"""The dopri5 likelihood is solved per image: the batch an image shares does not change its result."""
import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from miakit import diffusion
from miakit.diffusion import likelihood, unet as unets
from test_families import DATA_STD, exact_model, gaussian_logp

PERM = np.array([5, 2, 7, 0, 3, 6, 1, 4])  # another order, solved in batches of 3, 3 and 2


class OneAtATime(torch.nn.Module):
    """A network run on one image at a time. A batched call's last bits can depend on the batch
    size (on CPU this UNet's output moves by ~1e-6 between some batch sizes), and a random network's
    likelihood ODE amplifies any such change (a 1e-6 change of rtol moves log p by nats), so the
    tests hand the solver a network whose numerics cannot depend on the batch: what is left to
    check is the solver itself."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, label):
        return torch.cat([self.net(x[i:i + 1], label[i:i + 1]).sample for i in range(x.shape[0])])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Calls on one 8x8 image gain nothing from a second thread, and lose much on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return OneAtATime(unets.build_unet("tiny", "ddpm", 8, 1).eval()), diffusion.family("ddpm")


def images(n=8, seed=5):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def torchdiffeq_logp(model, fam, x, image_id, rtol, atol, seed, options=None):
    """torchdiffeq's own dopri5 on one image (the state and probes ``likelihood`` builds)."""
    probes = likelihood._probes(seed, image_id, (1, *x.shape[1:]), "rademacher")[:, None]
    dynamics = likelihood._Dynamics(model, fam, probes, tuple(x[:1].shape))
    state = torch.cat([x[:1].flatten(1), torch.zeros(1, 1)], dim=1)
    span = torch.tensor([fam.eps, 1.0], dtype=torch.float64)
    with torch.no_grad():
        final = odeint(dynamics, state, span, rtol=rtol, atol=atol, method="dopri5", options=options)[-1]
    logp = fam.prior_logp(final[:, :-1].reshape(x[:1].shape)).double() + final[:, -1].double()
    return float(logp[0]), dynamics.nfe


@pytest.mark.heavy
def test_unet_likelihood_does_not_depend_on_batch_size_or_order(unet):
    """torchdiffeq's dopri5 on the stacked batch (one step size and error norm for all images)
    gave these images log p differing by up to 65 nats between the two batchings."""
    net, fam = unet
    x = images()
    kw = dict(rtol=1e-3, atol=1e-3, seed=1, progress_bar=False)
    a = likelihood.likelihood(net, fam, x, batch_size=8, **kw)
    b = likelihood.likelihood(net, fam, x[PERM], batch_size=3, ids=PERM, **kw)
    np.testing.assert_allclose(b.logp, a.logp[PERM], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(b.nfe, a.nfe[PERM])  # each image's own evaluations
    assert len(set(a.nfe)) > 1  # the images did take different steps


@pytest.mark.heavy
def test_one_image_matches_torchdiffeq_dopri5(unet):
    net, fam = unet
    x = images(2, seed=6)
    ids = np.array([11, 12])
    res = likelihood.likelihood(net, fam, x, rtol=1e-3, atol=1e-3, seed=2, batch_size=2, ids=ids,
                                progress_bar=False)
    for i in range(2):
        logp, nfe = torchdiffeq_logp(net, fam, x[i:i + 1], int(ids[i]), 1e-3, 1e-3, seed=2)
        assert res.logp[i] == pytest.approx(logp, rel=1e-6, abs=0)
        assert res.nfe[i] == nfe  # same steps, same rejections


@pytest.mark.parametrize("name", ["ddpm", "vesde"])
def test_exact_score_gives_the_closed_form_in_any_batch(name):
    """Gaussian data and its exact score: Rademacher probes give the exact trace, so log p is the
    analytic Gaussian log-density up to the solver tolerance, whatever the batch."""
    fam = diffusion.family(name)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * DATA_STD
    kw = dict(rtol=1e-4, atol=1e-4, seed=0, progress_bar=False)
    a = likelihood.likelihood(exact_model(fam), fam, x, batch_size=8, **kw)
    b = likelihood.likelihood(exact_model(fam), fam, x[PERM], batch_size=3, ids=PERM, **kw)
    assert np.allclose(a.logp, gaussian_logp(x), atol=0.05), (a.logp, gaussian_logp(x))
    np.testing.assert_allclose(b.logp, a.logp[PERM], rtol=1e-6, atol=0)
    one, nfe = torchdiffeq_logp(exact_model(fam), fam, x[:1], 0, 1e-4, 1e-4, seed=0)
    assert a.logp[0] == pytest.approx(one, rel=1e-6, abs=0) and a.nfe[0] == nfe


def test_dopri5_options_follow_torchdiffeq_and_unknown_ones_are_refused():
    fam = diffusion.family("vpsde")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * DATA_STD
    options = {"first_step": 1e-3, "safety": 0.8, "ifactor": 5.0, "max_step": 0.2}
    res = likelihood.likelihood(exact_model(fam), fam, x, rtol=1e-4, atol=1e-4, options=options,
                                progress_bar=False)
    for i in range(2):
        logp, nfe = torchdiffeq_logp(exact_model(fam), fam, x[i:i + 1], i, 1e-4, 1e-4, 0, options)
        assert res.logp[i] == pytest.approx(logp, rel=1e-6, abs=0) and res.nfe[i] == nfe
    with pytest.raises(ValueError, match="step_t"):
        likelihood.likelihood(exact_model(fam), fam, x, options={"step_t": [0.5]}, progress_bar=False)
    with pytest.raises(AssertionError, match="max_num_steps"):
        likelihood.likelihood(exact_model(fam), fam, x, options={"max_num_steps": 2}, progress_bar=False)


def test_fixed_step_methods_still_go_through_torchdiffeq():
    fam = diffusion.family("vpsde")
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * DATA_STD
    res = likelihood.likelihood(exact_model(fam), fam, x, method="rk4", options={"step_size": 0.25},
                                progress_bar=False)
    probes = torch.stack([likelihood._probes(0, i, (1, 1, 8, 8), "rademacher") for i in range(3)], dim=1)
    dynamics = likelihood._Dynamics(exact_model(fam), fam, probes, tuple(x.shape))
    state = torch.cat([x.flatten(1), torch.zeros(3, 1)], dim=1)
    span = torch.tensor([fam.eps, 1.0], dtype=torch.float64)
    final = odeint(dynamics, state, span, method="rk4", options={"step_size": 0.25})[-1]
    logp = (fam.prior_logp(final[:, :-1].reshape(x.shape)).double() + final[:, -1].double()).numpy()
    np.testing.assert_allclose(res.logp, logp, rtol=1e-12)
    assert (res.nfe == dynamics.nfe).all()  # fixed steps: every image takes part in every call


def test_dynamics_takes_one_time_or_one_per_image():
    fam = diffusion.family("vpsde")
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(6)) * DATA_STD
    probes = torch.stack([likelihood._probes(0, i, (1, 1, 8, 8), "rademacher") for i in range(3)], dim=1)
    state = torch.cat([x.flatten(1), torch.zeros(3, 1)], dim=1)
    dynamics = likelihood._Dynamics(exact_model(fam), fam, probes, tuple(x.shape))
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    each = torch.cat([dynamics(t[i], state)[i:i + 1] for i in range(3)])
    together = dynamics(t, state)
    subset = dynamics(t[[2, 0]], state[[2, 0]], rows=torch.tensor([2, 0]))
    torch.testing.assert_close(together, each)
    torch.testing.assert_close(subset, each[[2, 0]])
