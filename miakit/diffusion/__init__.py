"""Diffusion families behind one interface, in the spirit of score_sde's ``SDE`` classes.

Every function that takes a model accepts any callable ``model(x, timestep)`` returning a tensor
or an object with ``.sample`` (diffusers' output), so analytic models work as well as UNets.

Time variables: ``marginal``, ``loss`` and ``score`` take the family's own step variable ``t``
(integer step indices 0..N-1 for the discrete families, continuous t in [eps, 1] for the SDEs);
``attack_steps`` lists values of it. ``ode_drift`` always takes continuous ODE time in [eps, 1].
Every family counts from the least noise (step 0), and the attack grids' "paper units" (0..999,
``from_paper_step``) do too. The paper's code labels SMLD's steps the other way round (label 0 =
sigma_max); ``Family.paper_label`` converts a family's step to the paper code's label.
"""
from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod

import numpy as np
import torch


def model_output(model, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """Call ``model(x, timestep)`` and unwrap diffusers' ``.sample`` output if present."""
    out = model(x, timestep)
    out = out.sample if hasattr(out, "sample") else out
    return out.float()


def _per_sample_mean(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(dim=1)


def _expand(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return coef.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class Family(ABC):
    """A diffusion process, its training objective, and its probability-flow ODE."""

    name: str
    discrete: bool
    eps: float = 1e-5  # start of the ODE time interval
    # how the UNet embeds the timestep it is queried at (diffusers' ``time_embedding_type``, part of
    # every run key through ``unet.architecture``): sinusoids of a step index or t * 999 by default
    time_embedding: str = "positional"

    @abstractmethod
    def marginal(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(x_t | x0), broadcast to x0's shape."""

    @abstractmethod
    def loss(self, model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-sample training loss at steps ``t`` with the given ``noise`` (lower = better fit)."""

    @abstractmethod
    def score(self, model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's estimate of grad_x log p_t(x) at steps ``t``."""

    @abstractmethod
    def ode_drift(self, model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/dt of the probability-flow ODE at continuous time ``t`` in [eps, 1]."""

    @abstractmethod
    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of the prior at z, per sample, in nats."""

    # -- what the later attacks need, the same for every family (x_t = a(t) x0 + s(t) noise) ----
    def scale_std(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a(t)`` and ``s(t)`` of ``x_t = a x0 + s noise`` at steps ``t``, broadcast to ``like``."""
        return self.marginal(torch.ones_like(like), t)

    def predict_noise(self, model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's estimate of the noise in ``x`` at steps ``t``: ``-s(t) * score``
        (epsilon-prediction families return the network's output)."""
        return -self.scale_std(t, x)[1] * self.score(model, x, t)

    def predict_x0(self, model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's estimate of the clean image: ``(x - s(t) noise_hat) / a(t)``."""
        a, s = self.scale_std(t, x)
        return (x - s * self.predict_noise(model, x, t)) / a

    def deterministic_step(self, model, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """One deterministic step from ``t`` to ``t_next`` (either direction): DDIM with eta = 0
        for the variance-preserving families, the probability-flow Euler step in sigma for the
        variance-exploding ones: ``a(t') x0_hat + s(t') noise_hat``, both estimated at ``t``."""
        a, s = self.scale_std(t, x)
        a_next, s_next = self.scale_std(t_next, x)
        noise = self.predict_noise(model, x, t)
        return a_next * (x - s * noise) / a + s_next * noise

    @abstractmethod
    def attack_steps(self, n: int) -> np.ndarray:
        """``n`` evaluation steps spread over the whole process, sorted, including both ends."""

    @abstractmethod
    def from_paper_step(self, t: int) -> float:
        """This family's step matching step ``t`` of the paper's 1000-step processes, counted from
        the least noise as here (for SMLD the paper code's label of it is ``paper_label``)."""

    def paper_label(self, step):
        """The step label the paper's code (built on score_sde_pytorch) gives this family's own
        step ``step``: the one place where the two conventions meet. Every family here counts
        its steps from the least noise (step 0), and so does the paper's code for DDPM (label t
        is beta_t's index) and the SDEs (continuous t stays t), so the label is the step itself.
        SMLD is the exception (``SMLD.paper_label``). The map is its own inverse, so it also
        takes a paper label back to this family's step."""
        return step

    @abstractmethod
    def sample_train_t(self, n: int, generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu") -> torch.Tensor:
        """Training steps drawn uniformly, as the family's trainer does."""

    @abstractmethod
    def sample(self, model, shape: tuple[int, ...], generator: torch.Generator | None = None,
               n_steps: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw images from the model with the family's standard sampler."""

    @property
    def sampler(self) -> str:
        """Name of the sampler ``sample`` uses (part of the sample cache key)."""
        return "ancestral"

    def hyperparameters(self) -> dict:
        """Every plain number or name that defines this family (step count, beta or sigma range,
        time offset, sampler settings), class attributes and instance attributes alike: part of
        the key of every run trained with it, so changing one trains a new run. ``time_embedding``
        is left out: it is keyed once, in the UNet architecture (``unet.architecture``)."""
        out: dict = {"class": type(self).__name__}
        for owner in (*reversed(type(self).__mro__), self):
            for name, value in vars(owner).items():
                if not name.startswith("__") and name != "time_embedding" and isinstance(value, (bool, int, float, str)):
                    out[name] = value
        return out

    @property
    @abstractmethod
    def n_steps(self) -> int:
        """Number of discrete steps N (or the step count of the continuous sampler)."""


class _Discrete(Family):
    """Families with N discrete steps; step t = 0 is the least noisy."""

    discrete = True

    def __init__(self, n: int):
        self._n = n

    @property
    def n_steps(self) -> int:
        return self._n

    def attack_steps(self, n):
        if n >= self._n:
            return np.arange(self._n)
        return np.unique(np.round(np.linspace(0, self._n - 1, n)).astype(np.int64))

    def from_paper_step(self, t):
        return min(round(t * self._n / 1000), self._n - 1)

    def sample_train_t(self, n, generator=None, device="cpu"):
        return torch.randint(0, self._n, (n,), generator=generator).to(device)


class _Continuous(Family):
    """SDE families with continuous time t in [eps, 1]."""

    discrete = False
    corrector_snr: float = 0.0  # > 0: one Langevin corrector step per sampler step at this SNR

    def __init__(self, sampler_steps: int = 1000):
        self._sampler_steps = sampler_steps

    @property
    def n_steps(self) -> int:
        return self._sampler_steps

    def attack_steps(self, n):
        """A fixed grid of times from eps to 1 (deterministic, so no seed): the paper-unit grid
        ``paper_steps(n)`` in this family's time, so every attack that searches steps (the
        registered loss attack's grid included) evaluates the same ones."""
        return np.array([self.from_paper_step(int(t)) for t in paper_steps(n)])

    def from_paper_step(self, t):
        return self.eps + (1 - self.eps) * t / 999

    def sample_train_t(self, n, generator=None, device="cpu"):
        return (torch.rand(n, generator=generator, dtype=torch.float64) * (1 - self.eps) + self.eps).to(device)

    @abstractmethod
    def sde(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift coefficient f(t) (the drift is f(t) x) and squared diffusion g(t)^2 of the forward SDE."""

    def ode_drift(self, model, x, t):
        f, g2 = self.sde(t)
        return _expand(f, x) * x - 0.5 * _expand(g2, x) * self.score(model, x, t)

    @property
    def sampler(self) -> str:
        if self.corrector_snr > 0:
            return f"euler-maruyama+langevin(snr={self.corrector_snr:g})"
        return "euler-maruyama"

    @torch.no_grad()
    def sample(self, model, shape, generator=None, n_steps=None, device="cpu"):
        """Euler-Maruyama on the reverse-time SDE from t = 1 to eps (score_sde's EM predictor),
        preceded at each step by one Langevin corrector step when ``corrector_snr`` > 0
        (score_sde's predictor-corrector sampler; its VE default is snr = 0.16)."""
        n_steps = n_steps or self._sampler_steps
        x = self.prior_sample(shape, generator).to(device)
        times = torch.linspace(1.0, self.eps, n_steps + 1, dtype=torch.float64)
        for i in range(n_steps):
            t, dt = times[i], float(times[i] - times[i + 1])
            batch_t = torch.full((shape[0],), float(t), dtype=torch.float64, device=device)
            if self.corrector_snr > 0:
                x = self._langevin(model, x, batch_t, generator)
            f, g2 = self.sde(batch_t)
            drift = _expand(f, x) * x - _expand(g2, x) * self.score(model, x, batch_t)
            x = x - drift * dt
            if i < n_steps - 1:
                x = x + _expand(g2.sqrt(), x) * math.sqrt(dt) * torch.randn(shape, generator=generator).to(device)
        return x

    def _langevin(self, model, x, t, generator):
        """One Langevin step whose size makes the noise-to-gradient norm ratio ``corrector_snr``
        (score_sde's LangevinCorrector: norms averaged over the batch, which keeps the step sane
        for images whose score happens to be near zero)."""
        grad = self.score(model, x, t)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        ratio = noise.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
        step = 2 * (self.corrector_snr * ratio) ** 2
        return x + step * grad + (2 * step).sqrt() * noise

    @abstractmethod
    def prior_sample(self, shape, generator=None) -> torch.Tensor:
        """A draw from the prior at t = 1."""


def _gaussian_logp(z: torch.Tensor, std: float) -> torch.Tensor:
    dims = z[0].numel()
    return -0.5 * dims * math.log(2 * math.pi * std ** 2) - 0.5 * z.flatten(1).pow(2).sum(dim=1) / std ** 2


class DDPM(_Discrete):
    """Discrete variance-preserving diffusion (Ho et al. 2020) with epsilon prediction.

    betas linear from 0.1/N to 20/N; loss ||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1-abar_t) eps, t)||^2
    averaged over pixels (score_sde's DDPM objective with ``reduce_mean``).
    """

    name = "ddpm"

    def __init__(self, n: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0):
        from diffusers import DDPMScheduler

        super().__init__(n)
        self.beta_min, self.beta_max = beta_min, beta_max
        self.scheduler = DDPMScheduler(num_train_timesteps=n, beta_start=beta_min / n,
                                       beta_end=beta_max / n, beta_schedule="linear",
                                       clip_sample=False, prediction_type="epsilon")
        self.betas = self.scheduler.betas.to(torch.float64)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(like.device)[t.long().to(like.device)]

    def marginal(self, x0, t):
        abar = self._abar(t, x0)
        return _expand(abar.sqrt(), x0) * x0, _expand((1 - abar).sqrt(), x0).expand_as(x0)

    def loss(self, model, x0, t, noise):
        mean, std = self.marginal(x0, t)
        predicted = model_output(model, mean + std * noise, t)
        return _per_sample_mean((predicted - noise) ** 2)

    def score(self, model, x, t):
        std = _expand((1 - self._abar(t, x)).sqrt(), x)
        return -model_output(model, x, t) / std

    def _beta_continuous(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def ode_drift(self, model, x, t):
        # As the paper's code (score_sde's likelihood, continuous=True): DDPM is read as the VP SDE
        # it discretises, the network queried at label t * (N - 1) and its output divided by the
        # continuous VP std sqrt(1 - exp(2 log_mean_coeff(t))).
        t = t.to(torch.float64)
        log_mean_coeff = -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        std = _expand((-torch.expm1(2 * log_mean_coeff)).sqrt(), x)
        score = -model_output(model, x, (t * (self._n - 1)).to(torch.float32)) / std
        beta = _expand(self._beta_continuous(t), x)
        return -0.5 * beta * x - 0.5 * beta * score

    def prior_logp(self, z):
        return _gaussian_logp(z, 1.0)

    @torch.no_grad()
    def sample(self, model, shape, generator=None, n_steps=None, device="cpu"):
        scheduler = self.scheduler.__class__.from_config(self.scheduler.config)
        scheduler.set_timesteps(n_steps or self._n)
        x = torch.randn(shape, generator=generator).to(device)
        for t in scheduler.timesteps:
            batch_t = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
            eps = model_output(model, x, batch_t)
            x = scheduler.step(eps, int(t), x, generator=generator).prev_sample
        return x


class SMLD(_Discrete):
    """Discrete variance-exploding diffusion (NCSN, Song & Ermon 2019).

    sigma_t geometric from sigma_min (t = 0) to sigma_max (t = N-1): the mirror of the paper
    code's labels, which count from sigma_max (``paper_label``). The network output o is
    divided by sigma to give the score; the loss is sigma^2-weighted denoising score matching,
    sigma^2 ||o/sigma + z/sigma||^2 = ||o + z||^2, averaged over pixels.
    """

    name = "smld"

    def __init__(self, n: int = 1000, sigma_min: float = 0.01, sigma_max: float = 50.0):
        super().__init__(n)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n, dtype=torch.float64))

    def _sigma(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.sigmas.to(like.device)[t.long().to(like.device)]

    def paper_label(self, step):
        """The paper code's label of our step ``step``: N - 1 - step. score_sde's SMLD loss
        indexes the noise levels from the largest, ``smld_sigma_array = flip(discrete_sigmas)``
        and ``sigmas = smld_sigma_array[labels]``, so its label 0 is sigma_max and N - 1 is
        sigma_min, the mirror of our noise-ascending steps (step 0 = sigma_min here, as every
        attack grid assumes). Its own inverse; arrays are mirrored elementwise."""
        if np.ndim(step) == 0:
            return self._n - 1 - int(step)
        return self._n - 1 - np.asarray(step)

    def marginal(self, x0, t):
        return x0, _expand(self._sigma(t, x0), x0).expand_as(x0)

    def loss(self, model, x0, t, noise):
        sigma = _expand(self._sigma(t, x0), x0)
        return _per_sample_mean((model_output(model, x0 + sigma * noise, t) + noise) ** 2)

    def score(self, model, x, t):
        return model_output(model, x, t) / _expand(self._sigma(t, x), x)

    def _sigma_continuous(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t.to(torch.float64)

    def ode_drift(self, model, x, t):
        # the VE SDE that SMLD discretises; the network is queried at label t * (N - 1)
        t = t.clamp(0.0, 1.0)  # adaptive solvers may probe past t = 1
        sigma = self._sigma_continuous(t)
        g2 = 2 * sigma ** 2 * math.log(self.sigma_max / self.sigma_min)
        score = model_output(model, x, t * (self._n - 1)) / _expand(sigma, x)
        return -0.5 * _expand(g2, x) * score

    def prior_logp(self, z):
        return _gaussian_logp(z, self.sigma_max)

    @torch.no_grad()
    def sample(self, model, shape, generator=None, n_steps=None, device="cpu"):
        """Ancestral (reverse-diffusion) sampling over the discrete sigmas, then one denoising step."""
        idx = np.unique(np.round(np.linspace(0, self._n - 1, n_steps or self._n)).astype(np.int64))[::-1]
        x = (torch.randn(shape, generator=generator) * self.sigma_max).to(device)
        for i, j in zip(idx[:-1], idx[1:]):
            t = torch.full((shape[0],), int(i), device=device, dtype=torch.long)
            var = float(self.sigmas[i] ** 2 - self.sigmas[j] ** 2)
            x = x + var * self.score(model, x, t) + math.sqrt(var) * torch.randn(shape, generator=generator).to(device)
        t0 = torch.full((shape[0],), int(idx[-1]), device=device, dtype=torch.long)
        return x + float(self.sigmas[idx[-1]] ** 2) * self.score(model, x, t0)


class VPSDE(_Continuous):
    """Variance-preserving SDE (Song et al. 2021), beta(t) linear from beta_min to beta_max.

    Epsilon prediction: the network is queried at label t * 999 (score_sde's convention) and
    the score is -eps_theta / std(t); the loss is ||eps - eps_theta||^2 averaged over pixels.
    """

    name = "vpsde"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, sampler_steps: int = 1000):
        super().__init__(sampler_steps)
        self.beta_min, self.beta_max = beta_min, beta_max

    def _log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(torch.float64)
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _std(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(2 * self._log_mean_coeff(t))).sqrt()

    def marginal(self, x0, t):
        t = t.to(x0.device)
        return _expand(self._log_mean_coeff(t).exp(), x0) * x0, _expand(self._std(t), x0).expand_as(x0)

    def _eps(self, model, x, t):
        return model_output(model, x, (t * 999).to(torch.float32))

    def loss(self, model, x0, t, noise):
        mean, std = self.marginal(x0, t)
        return _per_sample_mean((self._eps(model, mean + std * noise, t) - noise) ** 2)

    def score(self, model, x, t):
        return -self._eps(model, x, t) / _expand(self._std(t.to(x.device)), x)

    def sde(self, t):
        beta = self.beta_min + t.to(torch.float64) * (self.beta_max - self.beta_min)
        return -0.5 * beta, beta

    def prior_logp(self, z):
        return _gaussian_logp(z, 1.0)

    def prior_sample(self, shape, generator=None):
        return torch.randn(shape, generator=generator)


class VESDE(_Continuous):
    """Variance-exploding SDE (Song et al. 2021), sigma(t) = sigma_min (sigma_max/sigma_min)^t.

    The network is queried at sigma(t) and returns the score directly (diffusers' Fourier-
    embedding UNet divides its output by the timestep it is given, i.e. by sigma, as NCSN++ does).
    The loss is sigma^2-weighted denoising score matching, ||sigma s_theta + z||^2 over pixels.
    """

    name = "vesde"
    corrector_snr = 0.16
    time_embedding = "fourier"  # queried at sigma(t), as NCSN++ (diffusers then divides the output by sigma)

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, sampler_steps: int = 1000):
        super().__init__(sampler_steps)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t.to(torch.float64)

    def marginal(self, x0, t):
        return x0, _expand(self._sigma(t.to(x0.device)), x0).expand_as(x0)

    def loss(self, model, x0, t, noise):
        sigma = _expand(self._sigma(t.to(x0.device)), x0)
        return _per_sample_mean((sigma * self.score(model, x0 + sigma * noise, t) + noise) ** 2)

    def score(self, model, x, t):
        return model_output(model, x, self._sigma(t.to(x.device)).to(torch.float32))

    def sde(self, t):
        sigma = self._sigma(t)
        return torch.zeros_like(sigma), 2 * sigma ** 2 * math.log(self.sigma_max / self.sigma_min)

    def prior_logp(self, z):
        return _gaussian_logp(z, self.sigma_max)

    def prior_sample(self, shape, generator=None):
        return torch.randn(shape, generator=generator) * self.sigma_max


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class ScheduledDDPM(DDPM):
    """A discrete variance-preserving family read from a diffusers noise scheduler: any beta
    schedule it defines (linear, scaled linear, cosine, ...) through its ``alphas_cumprod``, and
    the network's prediction type (``epsilon``, ``v_prediction`` or ``sample``). It is how the
    attacks meet a model someone else trained (``from_scheduler``, ``miakit.own``).

    The loss is the model's own training objective in its parametrisation, averaged over pixels:
    ``||out - target||^2`` with target the noise, ``v = sqrt(abar) noise - sqrt(1 - abar) x0`` or
    ``x0``. Every other estimate goes through the noise estimate ``predict_noise``. For the
    likelihood, the schedule is read in continuous time as DDPM is (``DDPM.ode_drift``): ``log
    abar`` interpolated linearly between the steps at t = i / (N - 1), ``beta(t) = -d log abar/dt``,
    the network queried at label t (N - 1). The marginal, the prior and the sampler (the
    scheduler's own) are DDPM's.
    """

    name = "scheduled-ddpm"

    def __init__(self, scheduler):
        config = scheduler.config
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"prediction type {prediction!r} of {type(scheduler).__name__} is not one of "
                             f"{PREDICTION_TYPES}")
        if not hasattr(scheduler, "alphas_cumprod"):
            raise ValueError(f"{type(scheduler).__name__} has no alphas_cumprod: not a variance-preserving "
                             "(DDPM-type) noise schedule")
        _Discrete.__init__(self, int(config.num_train_timesteps))  # not DDPM's: the schedule is the scheduler's
        self.scheduler = scheduler.__class__.from_config(config)  # a copy: sampling changes its state
        self.prediction_type = prediction
        self.beta_schedule = str(config.get("beta_schedule", "custom"))
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64).clone()
        self.log_abar = self.alphas_cumprod.log()
        self.schedule_fingerprint = hashlib.sha256(self.alphas_cumprod.numpy().tobytes()).hexdigest()[:16]

    def _noise_from_output(self, out: torch.Tensor, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        a, s = _expand(abar.sqrt(), x), _expand((1 - abar).sqrt(), x)
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":  # v = a noise - s x0 and x = a x0 + s noise
            return a * out + s * x
        return (x - a * out) / s  # the network predicts x0

    def loss(self, model, x0, t, noise):
        abar = self._abar(t, x0)
        a, s = _expand(abar.sqrt(), x0), _expand((1 - abar).sqrt(), x0)
        out = model_output(model, a * x0 + s * noise, t)
        target = {"epsilon": noise, "v_prediction": a * noise - s * x0, "sample": x0}[self.prediction_type]
        return _per_sample_mean((out - target) ** 2)

    def predict_noise(self, model, x, t):
        return self._noise_from_output(model_output(model, x, t), x, self._abar(t, x))

    def score(self, model, x, t):
        return -self.predict_noise(model, x, t) / _expand((1 - self._abar(t, x)).sqrt(), x)

    def _continuous(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(abar(t), beta(t), network label) at continuous t in [0, 1]."""
        n = self._n
        label = t.to(torch.float64).clamp(0.0, 1.0).to(like.device) * (n - 1)
        i0 = label.floor().clamp(0, n - 2).long()
        w = label - i0
        log_abar = self.log_abar.to(like.device)
        lo, hi = log_abar[i0], log_abar[i0 + 1]
        return ((1 - w) * lo + w * hi).exp(), -(hi - lo) * (n - 1), label

    def ode_drift(self, model, x, t):
        abar, beta, label = self._continuous(t, x)
        noise = self._noise_from_output(model_output(model, x, label.to(torch.float32)), x, abar)
        score = -noise / _expand((1 - abar).sqrt(), x)
        beta = _expand(beta, x)
        return -0.5 * beta * x - 0.5 * beta * score


def from_scheduler(scheduler) -> ScheduledDDPM:
    """The family of a model trained with the diffusers noise ``scheduler`` (``DDPMScheduler`` or
    any scheduler with ``alphas_cumprod``: DDIM's, for example): its schedule and prediction type."""
    return ScheduledDDPM(scheduler)


FAMILIES: dict[str, type[Family]] = {"ddpm": DDPM, "smld": SMLD, "vpsde": VPSDE, "vesde": VESDE}


def paper_steps(n: int) -> np.ndarray:
    """``n`` steps (at most 1000) evenly spread over the paper's 1000-step processes, as sorted
    distinct integers from 0 to 999: the one step grid of the loss attack (``Family.attack_steps``
    maps it into each family's own steps)."""
    return np.unique(np.round(np.linspace(0, 999, n)).astype(np.int64))


def family(name: str) -> Family:
    """The diffusion family called ``name``: ddpm, smld, vpsde or vesde."""
    try:
        return FAMILIES[name]()
    except KeyError:
        raise ValueError(f"unknown diffusion family {name!r}; available: {sorted(FAMILIES)}") from None
