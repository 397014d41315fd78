"""Each later attack against its authors' definition, computed here by hand from the equations
(the schedules, the network contract of each family, the steps), never from the package's own
helpers: SecMI's up-then-down round trip (Duan et al. 2023, jinhaoduan/SecMI
``mia_evals/secmia.py``), and the continuous-time PIA, PIAN and SecMI of Kong et al. 2024
(kong13661/PIA ``gradtts/attack/grad_tts/model/diffusion.py``) on a Gaussian data distribution
whose score is known in closed form."""
import math

import numpy as np
import pytest
import torch

from miakit import attacks, diffusion

N = 1000  # steps of the discrete families and of the paper's step units
BETA_MIN, BETA_MAX = 0.1, 20.0
SIGMA_MIN, SIGMA_MAX = 0.01, 50.0
EPS = 1e-5  # start of the SDE families' time interval
K = 10  # SecMI's interval and the continuous attacks' step, in paper steps


def images(n=4, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def context(n=4):
    return attacks.Context(ids=np.arange(n))


def time_of(paper_step):
    """The book's mapping of a paper step (0..999) to SDE time in [EPS, 1]."""
    return EPS + (1 - EPS) * paper_step / 999


def sde(name, t):
    """(a, s, f, g^2) of ``name`` at times ``t`` (a tensor): the VP SDE, beta(t) = BETA_MIN + t
    (BETA_MAX - BETA_MIN), a = exp(-t^2 (BETA_MAX - BETA_MIN) / 4 - t BETA_MIN / 2), s^2 = 1 - a^2,
    f = -beta / 2, g^2 = beta; the VE SDE, a = 1, s = sigma(t), f = 0, g^2 = 2 s^2 log(SIGMA_MAX /
    SIGMA_MIN)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if name == "vpsde":
        a = torch.exp(-0.25 * t ** 2 * (BETA_MAX - BETA_MIN) - 0.5 * t * BETA_MIN)
        beta = BETA_MIN + t * (BETA_MAX - BETA_MIN)
        return a, torch.sqrt(1 - a ** 2), -0.5 * beta, beta
    s = SIGMA_MIN * (SIGMA_MAX / SIGMA_MIN) ** t
    return torch.ones_like(t), s, torch.zeros_like(t), 2 * s ** 2 * math.log(SIGMA_MAX / SIGMA_MIN)


def discrete_coefficients(name, index):
    """(a, s) of x_t = a x0 + s z at step ``index`` of DDPM (betas linear from 0.1/N to 20/N) or
    SMLD (sigmas geometric from SIGMA_MIN to SIGMA_MAX)."""
    if name == "ddpm":
        betas = np.linspace(BETA_MIN / N, BETA_MAX / N, N)
        abar = np.cumprod(1 - betas)[index]
        return math.sqrt(abar), math.sqrt(1 - abar)
    return 1.0, SIGMA_MIN * (SIGMA_MAX / SIGMA_MIN) ** (index / (N - 1))


def coefficients(name, paper_step):
    if name in ("ddpm", "smld"):
        return discrete_coefficients(name, paper_step)
    a, s = sde(name, time_of(paper_step))[:2]
    return float(a), float(s)


def network(name, noise):
    """A network of family ``name`` whose noise estimate at paper step p is ``noise(x, p)``,
    by each family's contract: DDPM and VP-SDE networks predict the noise (queried at the step
    index, at t * 999); an SMLD network returns sigma * score = -noise; a VE-SDE network,
    queried at sigma(t), returns the score -noise / sigma."""
    if name in ("ddpm", "vpsde"):
        return noise
    if name == "smld":
        return lambda x, index: -noise(x, index)
    def ve_net(x, sigma):
        sigma = sigma.double().reshape(-1, *[1] * (x.dim() - 1))
        step = 999 * (torch.log(sigma / SIGMA_MIN) / math.log(SIGMA_MAX / SIGMA_MIN) - EPS) / (1 - EPS)
        return -noise(x, step) / sigma
    return ve_net


def noise_estimate(name, model, x, paper_step):
    """The noise family ``name`` reads from its network ``model`` at ``paper_step``."""
    n = x.shape[0]
    if name == "ddpm":
        return model(x, torch.full((n,), paper_step))
    if name == "smld":
        return -model(x, torch.full((n,), paper_step))
    if name == "vpsde":
        return model(x, torch.full((n,), time_of(paper_step) * 999))
    sigma = coefficients(name, paper_step)[1]
    return -sigma * model(x, torch.full((n,), sigma))


def bent(name):
    """A nonlinear, step-dependent noise estimate that bends on the scale of one step of k
    (two periods per change of s/a over one step), so that stepping up then down and stepping
    down then up are clearly different round trips (they agree to first order in the step for
    any smooth model)."""
    (a1, s1), (a2, s2) = coefficients(name, 10), coefficients(name, 20)
    omega = 2 / (s2 / a2 - s1 / a1)

    def noise(x, label):
        level = torch.as_tensor(label).double().reshape(-1, *[1] * (x.dim() - 1))
        return torch.sin(omega * x + level / 10)
    return network(name, noise)


def ddim(name, model, x, t_from, t_to):
    """One deterministic (DDIM, eta = 0) step: x' = a' (x - s e) / a + s' e, e the noise
    estimate at t_from."""
    (a, s), (a2, s2) = coefficients(name, t_from), coefficients(name, t_to)
    e = noise_estimate(name, model, x, t_from)
    return a2 * (x - s * e) / a + s2 * e


def chain(name, model, x0, t_end):
    x = x0
    for t in range(0, t_end, K):
        x = ddim(name, model, x, t, t + K)
    return x


def sq(v):
    return v.flatten(1).pow(2).sum(1).numpy()


@pytest.mark.parametrize("name", ["ddpm", "smld", "vpsde", "vesde"])
def test_secmi_steps_up_then_down_from_t_sec_minus_k(name):
    """SecMI (their secmia.py): x~ = the deterministic inversion of x0 to t_sec - k in steps of
    k; one step up to t_sec, one step down to t_sec - k; t-error ||x' - x~||^2, lower = member.
    Stepping down first from x~ at t_sec (the other round trip) is a different number."""
    x0, net = images(), bent(name)
    grid = [{"t_sec": 20, "k": K}, {"t_sec": 30, "k": K}]
    got = attacks.score("secmi", net, diffusion.family(name), x0.float(), grid, context())
    for j, t_sec in enumerate((20, 30)):
        x_tilde = chain(name, net, x0, t_sec - K)
        up_down = ddim(name, net, ddim(name, net, x_tilde, t_sec - K, t_sec), t_sec, t_sec - K)
        x_at = chain(name, net, x0, t_sec)
        down_up = ddim(name, net, ddim(name, net, x_at, t_sec, t_sec - K), t_sec - K, t_sec)
        right, wrong = sq(up_down - x_tilde), sq(down_up - x_at)
        assert np.allclose(-got[:, j], right, rtol=2e-3), (t_sec, -got[:, j], right)
        far = np.linalg.norm(right - wrong) / np.linalg.norm(right)  # the two round trips differ clearly
        assert far > 0.3 and np.linalg.norm(-got[:, j] - wrong) / np.linalg.norm(wrong) > 0.2, (right, wrong)


# --- the continuous-time attacks on data N(MU0, SIGMA0^2 I), whose score is known at every t ---

MU0, SIGMA0 = 0.2, 0.5


def true_score(name, x, t):
    """grad log p_t(x) for p_0 = N(MU0, SIGMA0^2): p_t = N(a MU0, (a^2 SIGMA0^2 + s^2) I)."""
    a, s, _, _ = (v.reshape(-1, *[1] * (x.dim() - 1)) for v in sde(name, t))
    return -(x - a * MU0) / (a ** 2 * SIGMA0 ** 2 + s ** 2)


def gaussian_network(name):
    """The exact score as the network each SDE family expects: VP-SDE queries it at t * 999 and
    reads its output as the noise (score = -noise / s); VE-SDE queries it at sigma(t) and reads
    its output as the score."""
    if name == "vpsde":
        def vp_net(x, label):
            t = label.double() / 999
            return -sde(name, t)[1].reshape(-1, *[1] * (x.dim() - 1)) * true_score(name, x.double(), t)
        return vp_net

    def ve_net(x, sigma):
        t = torch.log(sigma.double() / SIGMA_MIN) / math.log(SIGMA_MAX / SIGMA_MIN)
        return true_score(name, x.double(), t)
    return ve_net


def at(t, n):
    """The times of paper step t for n images."""
    return torch.full((n,), time_of(t), dtype=torch.float64)


def their_denoised(name, x, t):
    """Their ``mu - estimator(x_t, t)`` (mu = 0) for VP; ``x - score`` for VE (x + 2 f_ode / g^2)."""
    score = true_score(name, x, t)
    return -score if name == "vpsde" else x - score


def pia_by_hand(name, x0, step, power, rescale, lag):
    """sum |x_t - D(x_{t + lag}, t + lag)|^power with x_t = a(t) x0 + s(t) e0 and
    e0 = -s(t0) score(x0, t0) at paper step 100; PIAN's e0 / (mean|e0| sqrt(2/pi) + 1e-12)."""
    n = x0.shape[0]
    e0 = -sde(name, at(100, n))[1].reshape(-1, 1, 1, 1) * true_score(name, x0, at(100, n))
    if rescale:
        e0 = e0 / (e0.abs().mean(dim=(1, 2, 3), keepdim=True) * math.sqrt(2 / math.pi) + 1e-12)

    def noised(p):
        a, s = (v.reshape(-1, 1, 1, 1) for v in sde(name, at(p, n))[:2])
        return a * x0 + s * e0
    later = noised(step + lag)
    return (noised(step) - their_denoised(name, later, at(step + lag, n))).abs().pow(power).flatten(1).sum(1).numpy()


def ode_drift_by_hand(name, x, t):
    """dx/dt of the probability-flow ODE: f x - g^2 score / 2 (VP: beta (-x - score) / 2)."""
    _, _, f, g2 = (v.reshape(-1, 1, 1, 1) for v in sde(name, t))
    return f * x - 0.5 * g2 * true_score(name, x, t)


def secmi_by_hand(name, x0, t_sec):
    """Euler steps of the PF-ODE between the times of paper steps 0, K, 2K, ... (step 0 = EPS):
    up to t_sec - K and one more up to t_sec, then one down; ||x' - x~||^2."""
    n, x = x0.shape[0], x0
    for p in range(0, t_sec - K, K):
        x = x + (time_of(p + K) - time_of(p)) * ode_drift_by_hand(name, x, at(p, n))
    h = time_of(t_sec) - time_of(t_sec - K)
    up = x + h * ode_drift_by_hand(name, x, at(t_sec - K, n))
    down = up - h * ode_drift_by_hand(name, up, at(t_sec, n))
    return sq(down - x)


SDES = ("vpsde", "vesde")


@pytest.mark.parametrize("name", SDES)
def test_pia_ode_and_pian_ode_against_their_definition(name):
    """PIA (PF-ODE) is sum |x_t - D(x_t, t)|^p; PIAN (PF-ODE) differs from it by exactly the
    rescaled initial noise and x_t compared with D at the next time t + h; either quirk alone
    gives another number."""
    x0, net, fam = images(), gaussian_network(name), diffusion.family(name)
    grid = [{"t": 20, "p": 2}, {"t": 200, "p": 4}]
    pia = attacks.score("pia_ode", net, fam, x0.float(), grid, context())
    pian = attacks.score("pian_ode", net, fam, x0.float(), grid, context())
    for j, g in enumerate(grid):
        by_hand = {(r, lag): pia_by_hand(name, x0, g["t"], g["p"], r, lag) for r in (False, True) for lag in (0, K)}
        assert np.allclose(-pia[:, j], by_hand[(False, 0)], rtol=1e-4), (g, -pia[:, j], by_hand[(False, 0)])
        assert np.allclose(-pian[:, j], by_hand[(True, K)], rtol=1e-4), (g, -pian[:, j], by_hand[(True, K)])
        for other in ((False, 0), (True, 0), (False, K)):
            assert not np.allclose(-pian[:, j], by_hand[other], rtol=2e-3), (g, other)


@pytest.mark.parametrize("name", SDES)
def test_pia_ode_distance_is_the_probability_flow_drift_over_half_g_squared(name):
    """x_t - D(x_t, t) = -2 f_ode(x_t, t) / g(t)^2: the PIA (PF-ODE) distance is the p-norm of
    the probability-flow drift, scaled at each t."""
    x0, net, fam = images(), gaussian_network(name), diffusion.family(name)
    n = x0.shape[0]
    e0 = -sde(name, at(100, n))[1].reshape(-1, 1, 1, 1) * true_score(name, x0, at(100, n))
    a, s, _, g2 = (v.reshape(-1, 1, 1, 1) for v in sde(name, at(50, n)))
    drift = ode_drift_by_hand(name, a * x0 + s * e0, at(50, n))
    got = attacks.score("pia_ode", net, fam, x0.float(), [{"t": 50, "p": 4}], context())
    assert np.allclose(-got[:, 0], (2 * drift / g2).pow(4).flatten(1).sum(1).numpy(), rtol=1e-4)


@pytest.mark.parametrize("name", SDES)
def test_secmi_ode_is_the_euler_round_trip_of_the_probability_flow_ode(name):
    x0, net, fam = images(), gaussian_network(name), diffusion.family(name)
    grid = [{"t_sec": 100, "k": K}, {"t_sec": 300, "k": K}]
    got = attacks.score("secmi_ode", net, fam, x0.float(), grid, context())
    for j, g in enumerate(grid):
        by_hand = secmi_by_hand(name, x0, g["t_sec"])
        assert np.allclose(-got[:, j], by_hand, rtol=1e-3), (g, -got[:, j], by_hand)


@pytest.mark.parametrize("attack", ["secmi_ode", "pia_ode", "pian_ode"])
@pytest.mark.parametrize("name", ["ddpm", "smld"])
def test_the_continuous_forms_refuse_the_discrete_families(attack, name):
    setting = attacks.get(attack).grid(None)[0]
    discrete = attack.removesuffix("_ode")
    with pytest.raises(ValueError, match=f"needs an SDE family; its discrete form is {discrete}"):
        attacks.score(attack, bent(name), diffusion.family(name), images().float(), [setting], context())
    assert "PF-ODE" in attacks.get(attack).label
