import math

import numpy as np
import pytest
import torch

from miakit import diffusion
from miakit.diffusion import unet


@pytest.fixture(scope="module")
def ddpm():
    return diffusion.family("ddpm")


def test_ddpm_schedule_known_values(ddpm):
    assert ddpm.betas[0].item() == pytest.approx(1e-4)
    assert ddpm.betas[-1].item() == pytest.approx(0.02)
    assert ddpm.alphas_cumprod[0].item() == pytest.approx(0.9999)
    assert ddpm.alphas_cumprod[499].item() == pytest.approx(0.0785872, rel=1e-4)
    assert ddpm.alphas_cumprod[999].item() == pytest.approx(4.03583e-05, rel=1e-3)
    expected = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    assert np.allclose(ddpm.alphas_cumprod.numpy(), expected, rtol=1e-5)


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="unknown diffusion family 'gan'"):
        diffusion.family("gan")


def test_marginal_matches_simulated_forward_process(ddpm):
    """Running the Markov chain x_t = sqrt(1-b_t) x_{t-1} + sqrt(b_t) e gives q(x_t|x0)'s moments."""
    torch.manual_seed(0)
    x0 = torch.full((20000, 1), 0.8, dtype=torch.float64)
    x = x0.clone()
    betas = ddpm.betas
    for t in range(300):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn_like(x)
    mean, std = ddpm.marginal(x0, torch.full((20000,), 299))
    assert x.mean().item() == pytest.approx(mean[0].item(), abs=0.01)
    assert x.std().item() == pytest.approx(std[0].item(), abs=0.01)


def test_loss_is_zero_for_the_exact_denoiser(ddpm):
    """For data that is a point mass at 0 the exact noise prediction is x_t / sqrt(1 - abar_t)."""
    oracle = lambda x, t: x / (1 - ddpm.alphas_cumprod[t]).sqrt().reshape(-1, 1, 1, 1).float()  # noqa: E731
    x0 = torch.zeros(6, 1, 4, 4)
    t = torch.tensor([0, 10, 200, 500, 900, 999])
    noise = torch.randn(6, 1, 4, 4)
    assert torch.allclose(ddpm.loss(oracle, x0, t, noise), torch.zeros(6), atol=1e-10)
    wrong = ddpm.loss(lambda x, t: torch.zeros_like(x), x0, t, noise)
    assert torch.allclose(wrong, noise.flatten(1).pow(2).mean(1))


def test_attack_steps(ddpm):
    steps = ddpm.attack_steps(41)
    assert steps[0] == 0 and steps[-1] == 999 and len(steps) == 41
    assert np.all(np.diff(steps) > 0)
    assert len(ddpm.attack_steps(5000)) == 1000


def test_prior_logp_is_standard_normal(ddpm):
    z = torch.randn(3, 1, 4, 4)
    expected = torch.distributions.Normal(0, 1).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(ddpm.prior_logp(z), expected, atol=1e-5)


def test_ode_drift_of_exact_score_for_gaussian_data(ddpm):
    """For x0 ~ N(0, I) the VP marginal stays N(0, I), the score is -x, and the drift vanishes."""
    vp = diffusion.family("vpsde")
    exact_eps = lambda x, label: x * vp._std(label.double() / 999).reshape(-1, 1, 1, 1).float()  # noqa: E731
    x = torch.randn(4, 1, 4, 4)
    drift = ddpm.ode_drift(exact_eps, x, torch.full((4,), 0.5))
    assert torch.allclose(drift, torch.zeros_like(drift), atol=1e-5)


def test_sampler_shape_and_range(ddpm):
    net = unet.build_unet("tiny", "ddpm", 8, 1).eval()
    x = ddpm.sample(net, (2, 1, 8, 8), torch.Generator().manual_seed(0), n_steps=5)
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()


def test_unet_presets():
    assert 1.0e6 < unet.n_parameters(unet.build_unet("small", "ddpm", 16, 1)) < 1.2e6
    with pytest.raises(ValueError, match="multiple of 4"):
        unet.build_unet("small", "ddpm", 10, 1)
    with pytest.raises(ValueError, match="unknown model preset"):
        unet.build_unet("huge", "ddpm", 16, 1)
    paper = unet.build_unet("paper", "ddpm", 64, 3)
    assert paper.config.block_out_channels == (128, 256, 256, 256)
    assert paper.config.down_block_types[2] == "AttnDownBlock2D"  # attention at 16x16
    assert sum(t.startswith("Attn") for t in paper.config.down_block_types) == 1
    assert math.isclose(paper.config.dropout, 0.1)
