"""White-box membership inference attacks behind one interface (``miakit.attacks.base``).

Members are the positive class and every score is oriented so that higher means "more likely a
member" (``member_score_from_loss`` negates the signals that are lower for members, once).

Registered attacks, one module each: ``loss`` (Hu & Pang 2023), ``likelihood`` (module
``log_likelihood``, Hu & Pang 2023),
``secmi`` (SecMI_stat, Duan et al. 2023), ``pia`` and ``pian`` (Kong et al. 2024), ``sima`` (Rao
et al. 2025), ``reference`` (the loss calibrated by reference models: offline LiRA, Carlini et al.
2022), and in module ``continuous`` the authors' continuous-time forms on the probability-flow ODE,
``secmi_ode``, ``pia_ode`` and ``pian_ode`` (Kong et al. 2024's Grad-TTS code; SDE families only).
Adding one is a module that calls ``register``, its test and one import below; the ``Attack`` says
where it belongs (``paper``, ``default_in``: chapter 06, the DP chapter, the own-model API), and the
contract tests in ``tests/test_registries.py`` run it through the common checks.
"""
from miakit.attacks.base import (DEFAULT_BATCH, PLACES, REGISTRY, Attack, Context, NonFiniteScore, WrongShape,  # noqa: F401
                                 defaults, get, later, member_score_from_loss, register, require_finite, score)
from miakit.attacks.loss import image_noise, loss_scores, losses  # noqa: F401
# each registers its attack; this order is the order of every table (the paper's, then the later ones by date)
from miakit.attacks import log_likelihood, secmi, pia, sima, reference  # noqa: F401,E402,I001
from miakit.attacks import continuous  # noqa: F401,E402  (the continuous-time forms, registered after the discrete ones)
from miakit.diffusion.likelihood import LikelihoodResult, likelihood  # noqa: F401,E402  (log p: higher = member already)
