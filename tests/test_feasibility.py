"""Every chapter's need of images is checked against the dataset before anything trains."""
import pytest

from miakit.book import build
from miakit.core import config
from miakit.chapters import feasibility


def test_the_cpu_and_smoke_profiles_fit_the_digits():
    for profile in ("smoke", "cpu"):  # 1797 digits; the cpu benchmark regime's Fashion-MNIST has 70,000
        feasibility.check(config.resolve(profile), bench_images=70_000)


def test_a_size_study_larger_than_the_dataset_fails_before_training_naming_the_parameter():
    s = config.resolve("cpu", size_n_members="50,100,800")  # 800 + 1000 nonmembers > 1797
    with pytest.raises(feasibility.Infeasible, match=r"size_n_members entry 800 \+ n_nonmembers=1000 = 1800"):
        feasibility.check(s)
    feasibility.check(config.resolve("cpu", size_n_members="50,100,797"), bench_images=70_000)  # exactly: fits


def test_reference_models_need_images_outside_the_split_only_when_asked_for():
    s = config.resolve("cpu", n_members=400, n_nonmembers=1000, size_n_members="100", dp_n_members=100, n_references=2)
    with pytest.raises(feasibility.Infeasible, match=r"n_references=2.*= 1800 images"):
        feasibility.check(s)
    feasibility.check(config.resolve("cpu", n_members=400, n_nonmembers=1000, size_n_members="100", dp_n_members=100,
                                     n_references=0), bench_images=70_000)


def test_every_shortfall_is_named_at_once_with_the_dataset_size():
    s = config.resolve("smoke", n_nonmembers=2000)
    with pytest.raises(feasibility.Infeasible) as err:
        feasibility.check(s, n_images=1797)
    text = str(err.value)
    assert "1797 images" in text and "the split" in text and "size study" in text and "chapter 05" in text


def test_the_book_refuses_an_infeasible_profile_before_any_kernel_starts():
    with pytest.raises(SystemExit, match="size_n_members entry 5000"):
        build.check_parameters("cpu", {"size_n_members": "50,5000"})
