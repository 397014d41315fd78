"""The registries carry the decisions: every registered attack and every registered family goes
through one contract suite (as diffusers runs every scheduler through its common tests), so a
new one is tested by registering it; and a toy attack and a toy family, registered with one entry
each, reach chapter 06, the DP chapter, the claims page and the own-model API."""
import json
import re

import numpy as np
import pytest
import torch

from miakit import attacks, diffusion, own
from miakit.attacks import base
from miakit.chapters import differential_privacy, overview
from miakit.core import config
from miakit.diffusion import unet
from miakit.training import train

SMOKE = config.resolve("smoke")
PAIRS = [(a, f) for a in attacks.REGISTRY for f in diffusion.FAMILIES]


def images(n=6, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def linear(x, t):
    """A 'network' that returns a fixed linear function of its input, whatever the step."""
    return 0.3 * x + 0.1


class Linear(torch.nn.Module):
    """``linear`` as a module (what ``speed.CountingModel`` wraps)."""

    def forward(self, x, t):
        return linear(x, t)


def shrunk(x, t):
    """A second one: a reference model that fits differently."""
    return 0.2 * x


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return unet.build_unet("tiny", family, 8, 1).eval()


# ---------------------------------------------------------------------------------------------
# families


@pytest.mark.parametrize("name", sorted(diffusion.FAMILIES))
def test_family_contract(name):
    """Named as registered; its time embedding is one diffusers knows and is the one its UNet
    gets (and is keyed once, through the architecture, not twice); its hyperparameters are plain
    JSON; the paper's step grid maps into its own steps in order; its loss on a UNet built for it
    is finite and non-negative at training steps, and its noise estimate has the image's shape."""
    fam = diffusion.family(name)
    assert fam.name == name
    assert fam.time_embedding in ("positional", "fourier")
    assert unet.architecture("tiny", name, 8, 1)["time_embedding_type"] == fam.time_embedding
    hp = fam.hyperparameters()
    assert hp["name"] == name and "time_embedding" not in hp and json.loads(json.dumps(hp)) == hp
    steps = [fam.from_paper_step(s) for s in (0, 100, 500, 999)]
    assert steps == sorted(steps) and len(set(steps)) == 4
    net, x = tiny(name), images(4)
    t = fam.sample_train_t(4, torch.Generator().manual_seed(0))
    loss = fam.loss(net, x, t, torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
    assert loss.shape == (4,) and torch.isfinite(loss).all() and (loss >= 0).all()
    assert fam.predict_noise(net, x, t).shape == x.shape


def test_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown diffusion family 'nope'"):
        unet.architecture("tiny", "nope", 8, 1)


# ---------------------------------------------------------------------------------------------
# attacks


@pytest.mark.parametrize("name", list(attacks.REGISTRY))
def test_attack_declares_where_it_belongs(name):
    a = attacks.get(name)
    assert a.label and a.reference and set(a.default_in) <= set(base.PLACES)
    grid = a.grid(SMOKE)
    assert isinstance(grid, list) and grid and all(isinstance(s, dict) for s in grid)
    for setting in grid:
        q = a.queries(setting)
        assert q is None or (isinstance(q, int) and q > 0)
        assert isinstance(a.describe(setting), str)
    for fam in diffusion.FAMILIES:
        assert isinstance(a.form(diffusion.family(fam)), str)


@pytest.mark.parametrize("name,family", PAIRS, ids=[f"{a}-{f}" for a, f in PAIRS])
def test_attack_contract(name, family):
    """On every family it is defined for: [n_images, n_settings] finite member scores, the same
    whatever the batch size and when called twice with the same seed and ids; on the others a
    clear refusal that names the attack and the family."""
    a, fam = attacks.get(name), diffusion.family(family)
    net, ref, x = linear, shrunk, images()  # known functions of the input: cheap, and the ODE is not stiff
    grid = a.grid(SMOKE)[:2]
    context = dict(ids=np.arange(10, 16), seed=3, references=(ref,))
    if a.undefined_for(fam):
        with pytest.raises(ValueError, match=re.escape(f"the {a.label} attack is not defined for {family}")):
            attacks.score(name, net, fam, x, grid, attacks.Context(**context))
        return
    small = attacks.score(name, net, fam, x, grid, attacks.Context(batch_size=4, **context))
    again = attacks.score(name, net, fam, x, grid, attacks.Context(batch_size=4, **context))
    large = attacks.score(name, net, fam, x, grid, attacks.Context(batch_size=512, **context))
    assert small.shape == (6, len(grid)) and np.isfinite(small).all()
    assert np.array_equal(small, again)
    assert np.allclose(small, large, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [n for n, a in attacks.REGISTRY.items() if a.queries(a.grid(SMOKE)[0]) is not None])
def test_attack_spends_the_queries_it_declares(name):
    """Counted model evaluations per image (the reference models' included: the reference is the
    same counting model), one setting at a time, equal ``Attack.queries``, on the first family
    the attack is defined for."""
    from miakit.evidence import speed

    a = attacks.get(name)
    fam = next(diffusion.family(f) for f in diffusion.FAMILIES if not a.undefined_for(diffusion.family(f)))
    counter = speed.CountingModel(Linear())
    for setting in a.grid(config.resolve("smoke", n_references=2))[-3:]:
        counter.evaluations = 0
        attacks.score(name, counter, fam, images(3), [setting], attacks.Context(ids=np.arange(3), references=(counter, counter)))
        assert counter.evaluations == 3 * a.queries(setting), setting


def test_defaults_follow_the_registry_and_refuse_unknown_places():
    assert attacks.defaults("dp") == [n for n, a in attacks.REGISTRY.items() if "dp" in a.default_in]
    assert SMOKE.privacy_study.attacks() == attacks.defaults("dp")
    assert SMOKE.family_names() == list(diffusion.FAMILIES)
    assert config.resolve("smoke", dp_attacks="loss,sima").privacy_study.attacks() == ["loss", "sima"]
    with pytest.raises(ValueError, match="unknown place 'nowhere'"):
        attacks.defaults("nowhere")
    with pytest.raises(ValueError, match="unknown default_in place"):
        attacks.register(base.Attack("bad-place", "bad", "-", None, lambda s: [], lambda s: 1, default_in=("dpp",)))
    assert "bad-place" not in attacks.REGISTRY


# ---------------------------------------------------------------------------------------------
# a toy attack and a toy family, one registration each


class ToyDDPM(diffusion.DDPM):
    """A toy family: DDPM on a gentler noise schedule (one class)."""

    name = "toyddpm"

    def __init__(self):
        super().__init__(beta_min=0.1, beta_max=10.0)


def _toy_scorer(model, family, x, grid, context):
    """Member score: minus the squared norm of the noise the model sees in the clean image at
    paper step t (lower for images it fits)."""
    out = []
    for setting in grid:
        t = base.family_steps(family, [setting["t"]]).repeat(x.shape[0])
        eps = base.batched(lambda xx, tt: family.predict_noise(model, xx, tt), model, [x, t],
                           context.batch_for(model, x))
        out.append(base.member_score_from_loss(eps.double().pow(2).flatten(1).sum(1)))
    return np.stack(out, axis=1)


TOY = base.Attack(name="toy", label="Toy", reference="(a test)", scorer=_toy_scorer,
                  grid=lambda settings: [{"t": 10}, {"t": 100}], queries=lambda setting: 1,
                  default_in=("later_attacks", "dp", "own"))


@pytest.fixture
def toys(monkeypatch):
    """The toy family and attack registered (one entry each), removed again after the test."""
    monkeypatch.setitem(diffusion.FAMILIES, ToyDDPM.name, ToyDDPM)
    monkeypatch.setitem(attacks.REGISTRY, TOY.name, TOY)


def test_toys_are_picked_up_as_defaults(toys):
    s = config.resolve("smoke", dp_families="toyddpm")  # validated against the family registry
    assert "toyddpm" in s.family_names() and "toy" in s.privacy_study.attacks()
    assert "toy" in attacks.defaults("later_attacks") and "toy" in attacks.defaults("own")
    assert "toy" in attacks.later() and unet.architecture("tiny", "toyddpm", 8, 1)["time_embedding_type"] == "positional"


@pytest.mark.slow
def test_a_toy_attack_and_family_reach_every_chapter(toys, tmp_path):
    """Nothing but the two registrations: the claims page (which runs chapters 02-06 from the
    store) judges the toy attack on the toy family (L1) and names it in the toy family's DP
    verdict (C5); chapter 06 and the DP chapter show it; the own-model API runs it by default."""
    # the toy family alone (every registered family is the default: test_toys_are_picked_up_as_defaults)
    settings = config.resolve("smoke", runs_dir=str(tmp_path), families="toyddpm", dp_families="toyddpm")
    result = overview.overview(settings, progress_bar=False)
    claims_named = {v.claim for v in result.verdicts()}
    assert "L1 Toy (toyddpm)" in claims_named
    c5 = [v for v in result.verdicts() if v.claim.startswith("C5") and "toyddpm" in v.claim]
    assert c5 and any("Toy" in c.quantity for v in c5 for c in v.checks)
    assert ("toyddpm", "toy") in result.attacks.outcomes and ("toyddpm", "loss") in result.attacks.outcomes
    assert "Toy" in set(result.attacks.table().reset_index().to_string().split())
    study = differential_privacy.tradeoff_study(settings, progress_bar=False)  # the DP chapter, from the store
    assert "toy" in study.attack_names() and study.families() == ["toyddpm"]
    run = train.ensure(settings.for_family("toyddpm"), progress_bar=False)
    members, nonmembers = run.dataset.images[run.split.members], run.dataset.images[run.split.nonmembers]
    mine = own.attack(run.model, run.family, members, nonmembers, settings=settings, progress_bar=False)
    assert "toy" in mine.studies and "Toy" in mine.table().to_string()
