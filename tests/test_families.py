"""All four diffusion families: forward moments, training objectives, and the exact likelihood."""
import math

import numpy as np
import pytest
import torch

from miakit import attacks, diffusion
from miakit.diffusion import likelihood, unet
from miakit.chapters import loss_and_likelihood
from miakit.core.data import PARTS

FAMILIES = ["ddpm", "smld", "vpsde", "vesde"]
DATA_STD = 0.5  # Gaussian test data N(0, DATA_STD^2 I)


def exact_model(fam):
    """A 'network' whose output gives the exact score of N(0, DATA_STD^2 I) data, in the
    parametrisation each family expects from its model."""

    if fam.name == "ddpm":
        abar = fam.alphas_cumprod
        vp = diffusion.family("vpsde")  # DDPM's ODE reads the model as the VP SDE (score_sde)

        def net(x, label):
            if not torch.is_floating_point(label):  # training steps: the discrete schedule
                a2 = abar[label].reshape(-1, 1, 1, 1)
            else:  # ODE time label t * 999: the continuous VP marginal
                a2 = torch.exp(2 * vp._log_mean_coeff((label.double() / 999).reshape(-1, 1, 1, 1)))
            return (x * (1 - a2).sqrt() / (a2 * DATA_STD ** 2 + 1 - a2)).float()
    elif fam.name == "vpsde":
        def net(x, label):
            t = (label.double() / 999).reshape(-1, 1, 1, 1)
            a2 = torch.exp(2 * fam._log_mean_coeff(t))
            return (x * (1 - a2).sqrt() / (a2 * DATA_STD ** 2 + 1 - a2)).float()
    elif fam.name == "smld":
        def net(x, label):
            frac = label.double() / (fam.n_steps - 1)
            sigma = fam._sigma_continuous(frac).reshape(-1, 1, 1, 1)
            return (-x * sigma / (DATA_STD ** 2 + sigma ** 2)).float()  # output / sigma = score
    else:  # vesde: queried at sigma, returns the score
        def net(x, sigma):
            sigma = sigma.double().reshape(-1, 1, 1, 1)
            return (-x / (DATA_STD ** 2 + sigma ** 2)).float()
    return net


def gaussian_logp(x):
    return torch.distributions.Normal(0.0, DATA_STD).log_prob(x.double()).flatten(1).sum(1).numpy()


@pytest.mark.parametrize("name", FAMILIES)
def test_marginal_matches_simulated_forward_process(name):
    fam = diffusion.family(name)
    torch.manual_seed(0)
    n = 20000
    x0 = torch.full((n, 1), 0.8, dtype=torch.float64)
    if name == "ddpm":
        t_end = torch.full((n,), 299)
        x = x0.clone()
        for t in range(300):
            x = (1 - fam.betas[t]).sqrt() * x + fam.betas[t].sqrt() * torch.randn_like(x)
    elif name == "smld":
        t_end = torch.full((n,), 299)
        x = x0 + fam.sigmas[0] * torch.randn_like(x0)
        for t in range(1, 300):
            x = x + (fam.sigmas[t] ** 2 - fam.sigmas[t - 1] ** 2).sqrt() * torch.randn_like(x)
    else:  # Euler-Maruyama on the forward SDE from 0 to 0.3
        t_end = torch.full((n,), 0.3, dtype=torch.float64)
        steps, x = 600, x0.clone()
        if name == "vesde":
            x = x + fam.sigma_min * torch.randn_like(x)  # the VE SDE starts at sigma_min
        for i in range(steps):
            t = torch.full((n,), 0.3 * i / steps, dtype=torch.float64)
            f, g2 = fam.sde(t)
            x = x + f[:, None] * x * (0.3 / steps) + (g2[:, None] * 0.3 / steps).sqrt() * torch.randn_like(x)
    mean, std = fam.marginal(x0, t_end)
    assert x.mean().item() == pytest.approx(mean[0].item(), abs=0.02 * max(1.0, std[0].item()))
    assert x.std().item() == pytest.approx(std[0].item(), rel=0.02)


@pytest.mark.parametrize("name", FAMILIES)
def test_training_loss_is_minimised_by_the_exact_score(name):
    fam = diffusion.family(name)
    net = exact_model(fam)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4000, 1, 2, 2, generator=gen) * DATA_STD
    t = fam.sample_train_t(4000, gen)
    noise = torch.randn(x0.shape, generator=gen)
    exact = fam.loss(net, x0, t, noise).mean().item()
    for scale in (0.9, 1.1):
        scaled = lambda x, lab, s=scale: net(x, lab) * s  # noqa: E731
        assert fam.loss(scaled, x0, t, noise).mean().item() > exact


@pytest.mark.parametrize("name,snr", [("ddpm", None), ("smld", None), ("vpsde", None), ("vesde", 0.0),
                                      ("vesde", 0.16)])
def test_sampler_with_the_exact_score_draws_the_data_distribution(name, snr):
    """Each family's sampler (VE-SDE with and without the Langevin corrector) turns the exact
    score of N(0, 0.5^2) data into draws with that mean and standard deviation."""
    fam = diffusion.family(name)
    if snr is not None:
        fam.corrector_snr = snr
    x = fam.sample(exact_model(fam), (2000, 1, 2, 2), torch.Generator().manual_seed(0), n_steps=200)
    assert torch.isfinite(x).all()
    assert x.mean().item() == pytest.approx(0.0, abs=0.03)
    assert x.std().item() == pytest.approx(DATA_STD, rel=0.05)


@pytest.mark.parametrize("name", ["vpsde", "vesde", "ddpm", "smld"])
def test_likelihood_of_exact_score_equals_closed_form(name):
    """Probability-flow log-likelihood with the exact score = the analytic Gaussian log-density."""
    fam = diffusion.family(name)
    x = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1)) * DATA_STD
    res = likelihood.likelihood(exact_model(fam), fam, x, rtol=1e-6, atol=1e-6, exact_trace=True,
                                progress_bar=False)
    tolerance = 0.02
    assert np.allclose(res.logp, gaussian_logp(x), atol=tolerance), (res.logp, gaussian_logp(x))
    assert np.allclose(res.bpd, -res.logp / (4 * math.log(2)) + 7)
    assert (res.nfe > 0).all()


def test_hutchinson_probes_against_the_exact_trace():
    """For an isotropic Jacobian a Rademacher probe is exact (v^T c I v = c D); Gaussian probes are
    unbiased but noisy, and more probes bring them closer."""
    fam = diffusion.family("vpsde")
    x = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(2)) * DATA_STD
    kw = dict(rtol=1e-5, atol=1e-5, progress_bar=False)
    exact = likelihood.likelihood(exact_model(fam), fam, x, exact_trace=True, **kw).logp
    rademacher = likelihood.likelihood(exact_model(fam), fam, x, **kw).logp
    assert np.allclose(rademacher, exact, atol=1e-3)
    errors = [np.abs(likelihood.likelihood(exact_model(fam), fam, x, n_probes=k, probe="gaussian", **kw).logp
                     - exact).mean() for k in (1, 64)]
    assert errors[1] < errors[0] and errors[1] < 0.5


def test_likelihood_is_deterministic_and_batch_independent():
    fam = diffusion.family("vesde")
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(4)) * DATA_STD
    kw = dict(rtol=1e-5, atol=1e-5, seed=3, probe="gaussian", progress_bar=False)
    a = likelihood.likelihood(exact_model(fam), fam, x, batch_size=5, **kw)
    c = likelihood.likelihood(exact_model(fam), fam, x, batch_size=2, **kw)
    assert np.allclose(a.logp, c.logp, atol=1e-3)  # other batches take other adaptive steps
    other_seed = likelihood.likelihood(exact_model(fam), fam, x, batch_size=5, **{**kw, "seed": 4})
    assert not np.allclose(a.logp, other_seed.logp, atol=1e-3)  # the probes depend on the seed


@pytest.mark.heavy
def test_likelihood_of_a_unet_is_deterministic_and_dequantizes():
    fam = diffusion.family("ddpm")
    torch.manual_seed(0)
    net = unet.build_unet("tiny", "ddpm", 4, 1).eval()
    x = torch.rand(3, 1, 4, 4) * 2 - 1
    kw = dict(rtol=1e-3, atol=1e-3, seed=3, progress_bar=False)
    a = likelihood.likelihood(net, fam, x, **kw)
    b = likelihood.likelihood(net, fam, x, **kw)
    assert np.array_equal(a.logp, b.logp) and np.isfinite(a.bpd).all()
    d = likelihood.likelihood(net, fam, x, dequantize=True, **kw)
    assert not np.allclose(a.logp, d.logp)
    assert attacks.likelihood is likelihood.likelihood  # the attack API's entry point


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_trains_and_is_attacked(name, tmp_path):
    from miakit.core import config
    from miakit.training import train

    s = config.resolve("smoke", family=name, iterations=4, runs_dir=str(tmp_path))
    run = train.ensure(s, progress_bar=False)
    steps = run.family.attack_steps(3)
    scores = attacks.loss_scores(run.model, run.family, run.images(run.split.members[:2]), steps,
                                 progress_bar=False)
    assert scores.shape == (2, 3) and np.isfinite(scores).all()
    assert run.samples(2, n_steps=3).shape == (2, 1, 8, 8)


# --- the paper code's step labels -------------------------------------------------------------

def score_sde_smld_sigmas(n, sigma_min, sigma_max):
    """score_sde's SMLD noise levels by label: ``VESDE.discrete_sigmas`` is
    exp(linspace(log sigma_min, log sigma_max, N)), i.e. sigma_min (sigma_max/sigma_min)^(i/(N-1)),
    and its SMLD loss (losses.get_smld_loss_fn) reads ``smld_sigma_array = flip(discrete_sigmas)``
    at ``labels = randint(0, N)``: label 0 is sigma_max."""
    discrete = [sigma_min * (sigma_max / sigma_min) ** (i / (n - 1)) for i in range(n)]
    return discrete[::-1]


@pytest.mark.parametrize("n", [1000, 10])
def test_smld_paper_label_is_score_sdes_flipped_index(n):
    fam = diffusion.SMLD(n=n)
    flipped = score_sde_smld_sigmas(n, fam.sigma_min, fam.sigma_max)
    assert fam.paper_label(0) == n - 1 and fam.paper_label(n - 1) == 0
    for k in sorted({0, 1, n // 3, n // 2, n - 2, n - 1}):
        ours = fam.paper_label(k)  # our step at the paper's label k (the map is its own inverse)
        assert fam.paper_label(ours) == k
        sigma = fam.marginal(torch.ones(1, 1, dtype=torch.float64), torch.tensor([ours]))[1].item()
        assert sigma == pytest.approx(flipped[k], rel=1e-12)
    assert np.array_equal(fam.paper_label(np.array([0, 5])), [n - 1, n - 6])


@pytest.mark.parametrize("name", ["ddpm", "vpsde", "vesde"])
def test_paper_labels_are_the_steps_elsewhere(name):
    fam = diffusion.family(name)
    for step in fam.attack_steps(11):
        assert fam.paper_label(step.item()) == step.item()
    assert loss_and_likelihood.step_label(fam.attack_steps(11)[3].item(), fam) == loss_and_likelihood.step_label(fam.attack_steps(11)[3].item())


def test_paper_labels_add_no_hyperparameter():
    """The label map is a method, not a setting: no run key changes."""
    assert "paper_label" not in diffusion.family("smld").hyperparameters()


def test_roc_steps_sit_at_the_mirrored_noise_levels_for_smld():
    smld, ddpm = diffusion.family("smld"), diffusion.family("ddpm")
    # the paper's ROC steps are its code's labels: for SMLD our steps 999 - label, in label order
    assert loss_and_likelihood.roc_steps(np.arange(1000), smld) == [999, 799, 499, 399, 199, 0]
    assert loss_and_likelihood.roc_steps(np.arange(1000), ddpm) == [0, 200, 500, 600, 800, 999]
    grid = smld.attack_steps(41)  # 0, 25, 50, ... : the nearest evaluated steps to the mirrored ones
    picked = loss_and_likelihood.roc_steps(grid, smld)
    assert picked == [999, 799, 500, 400, 200, 0]
    assert [smld.paper_label(s) for s in picked] == [0, 200, 499, 599, 799, 999]
    assert loss_and_likelihood.step_label(50, smld) == "t = 50 (paper's SMLD label 949)"
    assert loss_and_likelihood.step_label(50, ddpm) == loss_and_likelihood.step_label(50) == "t = 50"
    # a study's rows at the paper's steps carry the paper's label, in the paper's order
    rng = np.random.default_rng(0)
    scores = {p: rng.normal(size=(6, len(grid))) for p in PARTS}
    study = loss_and_likelihood.LossAttackStudy.from_scores(grid, scores, family=smld)
    labels = list(study.at_paper_steps())
    assert labels[0] == "t = 999 (paper's SMLD label 0)" and labels[-1] == "t = 0 (paper's SMLD label 999)"
    assert all("paper's SMLD label" in label for label in study.headline_table().index)
