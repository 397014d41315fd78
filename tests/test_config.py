import types

import pytest

from miakit.core import config


def test_profile_values_and_overrides():
    s = config.resolve("cpu", n_members=None, iterations=10)
    assert s.data.n_members == config.PROFILES["cpu"]["n_members"]  # None = from the profile
    assert s.target.iterations == 10
    assert s.profile == "cpu"


@pytest.mark.parametrize("profile", sorted(config.PROFILES))
def test_every_profile_resolves(profile):
    s = config.resolve(profile)
    assert set(s.flat()) == {"profile", *config.PARAMETERS}


def test_unknown_profile_is_an_error():
    with pytest.raises(ValueError, match="unknown profile 'laptop'.*cpu"):
        config.resolve("laptop")


def test_unknown_parameter_is_an_error_naming_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['n_member'\].*n_members"):
        config.resolve("smoke", n_member=5)


@pytest.mark.parametrize("old,new", sorted(config.RENAMED.items()))
def test_an_old_knob_name_is_refused_with_its_new_name(old, new):
    with pytest.raises(ValueError, match=f"renamed parameter.*{old} is now {new}"):
        config.resolve("smoke", **{old: 1})
    assert new in config.PARAMETERS and old not in config.PARAMETERS


def test_a_scoped_knob_is_its_scope_prefix_and_the_base_name():
    """One rule: a knob that sets, for one study, what a base knob sets for the book is called
    ``<scope>_<base>`` (dp_n_members for n_members, factor_n_noise for n_noise)."""
    scopes = ("dp", "factor", "size", "aggregation", "bench")
    for new in config.RENAMED.values():
        scope, _, base = new.partition("_")
        assert scope in scopes and base in config.PARAMETERS, new
    stems = {"members": "n_members", "nonmembers": "n_nonmembers", "noise": "n_noise"}
    for name in config.PARAMETERS:
        for stem, base in stems.items():
            if name.endswith("_" + stem) or name == stem:
                assert name.endswith(base), f"{name} should end in {base}"


def test_values_are_coerced_or_rejected():
    s = config.resolve("smoke", iterations="12", lr="0.5", random_flip="true")
    assert s.target.iterations == 12 and s.target.lr == 0.5 and s.target.random_flip is True
    with pytest.raises(ValueError, match="iterations"):
        config.resolve("smoke", iterations="many")
    with pytest.raises(ValueError, match="val_fraction"):
        config.resolve("smoke", val_fraction=1.5)


def test_hash_keys_only_what_changes_the_weights():
    base = config.resolve("smoke").target_hash()
    assert base == config.resolve("smoke").target_hash()
    assert config.resolve("smoke", n_members=17).target_hash() != base
    assert config.resolve("smoke", lr=0.01).target_hash() != base
    # attack settings, checkpoint cadence and the run folder do not change the trained weights
    assert config.resolve("smoke", n_noise=3, checkpoint_every=3, runs_dir="/elsewhere").target_hash() == base


def test_from_namespace_reads_notebook_globals():
    ns = {"profile": "smoke", "n_members": None, "iterations": 7, "miakit": types, "_private": 1,
          "In": [], "get_ipython": print}
    s = config.from_namespace(ns)
    assert s.target.iterations == 7 and s.profile == "smoke"
    with pytest.raises(ValueError, match="itterations"):
        config.from_namespace({"profile": "smoke", "itterations": 7})


def test_from_namespace_can_be_called_again_after_later_cells_defined_more_names():
    """Re-running the setup cell (or the whole notebook) in one kernel: the names that later
    cells defined are not parameters; a changed parameter value is read; a misspelt name on the
    first call is still an error."""
    ns = {"profile": "smoke", "iterations": 7, "miakit": types}
    first = config.from_namespace(ns)
    ns.update(settings=first, clock=object(), runs={}, lead="ddpm", loss=[0.5])  # what later cells define
    ns["iterations"] = 9  # the user edits the parameters cell and runs all again
    again = config.from_namespace(ns)
    assert again.target.iterations == 9 and again.profile == "smoke"
    ns["n_noise"] = 3  # a knob not in the parameters cell before is still read
    assert config.from_namespace(ns).attack.n_noise == 3
    with pytest.raises(ValueError, match="unknown parameter"):  # a fresh kernel: every name counts
        config.from_namespace({"profile": "smoke", "iterations": 7, "lead": "ddpm"})


@pytest.mark.parametrize("override,message", [
    (dict(lr="Infinity"), "finite"), (dict(lr=float("nan")), "finite"), (dict(n_members=3.7), "whole number"),
    (dict(iterations=True), "boolean was given"), (dict(random_flip=1), "boolean"), (dict(model="huge"), "preset"),
    (dict(model="small", resolution=9), "multiple of 4"), (dict(families="ddpm,foo"), "unknown diffusion family"),
    (dict(families="../esc"), "unknown diffusion family"), (dict(dp_families="ddpm,bar"), "dp_families"),
    (dict(dataset="ffhq"), "folder:<path>"), (dict(lik_method="rk5"), "torchdiffeq method"),
])
def test_bad_values_are_rejected_by_name(override, message):
    with pytest.raises(ValueError, match=message):
        config.resolve("smoke", **override)


def test_meaningful_infinities_and_whole_floats_are_accepted():
    s = config.resolve("smoke", trainer="dp-sgd", dp_epsilon="inf", dp_max_grad_norm=float("inf"), n_members=20.0)
    assert s.target.dp_epsilon == float("inf") and s.data.n_members == 20
