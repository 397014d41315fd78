"""Diffusion families behind one interface, in the spirit of score_sde's ``SDE`` classes.

Every function that takes a model accepts any callable ``model(x, timestep)`` returning a tensor
or an object with ``.sample`` (diffusers' output), so analytic models work as well as UNets.

Time variables: ``marginal``, ``loss`` and ``score`` take the family's own step variable ``t``
(integer step indices 0..N-1 for the discrete families, continuous t in [eps, 1] for the SDEs);
``attack_steps`` lists values of it. ``ode_drift`` always takes continuous ODE time in [eps, 1].
"""
from __future__ import annotations

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

    @abstractmethod
    def attack_steps(self, n: int) -> np.ndarray:
        """``n`` evaluation steps spread over the whole process, sorted, including both ends."""

    @abstractmethod
    def sample_train_t(self, n: int, generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu") -> torch.Tensor:
        """Training steps drawn uniformly, as the family's trainer does."""

    @abstractmethod
    def sample(self, model, shape: tuple[int, ...], generator: torch.Generator | None = None,
               n_steps: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw images from the model with the family's standard sampler."""

    @property
    @abstractmethod
    def n_steps(self) -> int:
        """Number of discrete steps N (or the step count of the continuous sampler)."""


class DDPM(Family):
    """Discrete variance-preserving diffusion (Ho et al. 2020) with epsilon prediction.

    betas linear from 0.1/N to 20/N; loss ||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1-abar_t) eps, t)||^2
    averaged over pixels (score_sde's DDPM objective with ``reduce_mean``).
    """

    name = "ddpm"
    discrete = True

    def __init__(self, n: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0):
        from diffusers import DDPMScheduler

        self.beta_min, self.beta_max, self._n = beta_min, beta_max, n
        self.scheduler = DDPMScheduler(num_train_timesteps=n, beta_start=beta_min / n,
                                       beta_end=beta_max / n, beta_schedule="linear",
                                       clip_sample=False, prediction_type="epsilon")
        self.betas = self.scheduler.betas.to(torch.float64)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)

    @property
    def n_steps(self) -> int:
        return self._n

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
        # DDPM seen as the discretised VP SDE (score_sde): beta(t) linear, the network queried
        # at label t * (N - 1) with the discrete schedule's std.
        labels = t * (self._n - 1)
        std = _expand((1 - self.alphas_cumprod.to(x.device)[labels.round().long()]).sqrt(), x)
        score = -model_output(model, x, labels) / std
        beta = _expand(self._beta_continuous(t), x)
        return -0.5 * beta * x - 0.5 * beta * score

    def prior_logp(self, z):
        dims = z[0].numel()
        return -0.5 * dims * math.log(2 * math.pi) - 0.5 * z.flatten(1).pow(2).sum(dim=1)

    def attack_steps(self, n):
        if n >= self._n:
            return np.arange(self._n)
        return np.unique(np.round(np.linspace(0, self._n - 1, n)).astype(np.int64))

    def sample_train_t(self, n, generator=None, device="cpu"):
        return torch.randint(0, self._n, (n,), generator=generator).to(device)

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


FAMILIES: dict[str, type[Family]] = {"ddpm": DDPM}


def family(name: str) -> Family:
    """The diffusion family called ``name`` (ddpm; smld, vpsde, vesde to come)."""
    try:
        return FAMILIES[name]()
    except KeyError:
        raise ValueError(f"unknown diffusion family {name!r}; available: {sorted(FAMILIES)}") from None
