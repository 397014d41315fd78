"""Attack your own model (miakit.own, diffusion.ScheduledDDPM): the family read from a diffusers
scheduler, and the page book/own_model.md, whose code runs here on a small model saved with
save_pretrained."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from miakit import diffusion, own

ROOT = Path(__file__).resolve().parents[1]


def _oracle(family, x0):
    """A network that knows ``x0``: from x_t it returns the exact noise, velocity or clean image."""
    def model(x, t):
        abar = family.alphas_cumprod[t.long()].to(torch.float32).reshape(-1, 1, 1, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        noise = (x - a * x0) / s
        return {"epsilon": noise, "v_prediction": a * noise - s * x0, "sample": x0.expand_as(x)}[family.prediction_type]
    return model


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_a_network_that_knows_the_image_has_zero_loss_and_recovers_it(schedule, prediction):
    """The loss is the model's own objective in its parametrisation, and every estimate goes
    through the right noise: an oracle's loss is 0, its noise and x0 estimates are exact. A
    family that read the prediction type wrongly fails this for every type but its own."""
    family = own.family_from_scheduler(DDPMScheduler(num_train_timesteps=100, beta_schedule=schedule,
                                                     prediction_type=prediction))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=gen) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([1, 50, 98])
    model = _oracle(family, x0)
    assert family.loss(model, x0, t, noise).abs().max() < 1e-8
    mean, std = family.marginal(x0, t)
    xt = mean + std * noise
    assert torch.allclose(family.predict_noise(model, xt, t), noise, atol=1e-4)
    assert torch.allclose(family.predict_x0(model, xt, t), x0, atol=1e-3)
    wrong = own.family_from_scheduler(DDPMScheduler(num_train_timesteps=100, beta_schedule=schedule,
                                                    prediction_type="epsilon" if prediction != "epsilon" else "sample"))
    assert family.loss(model, x0, t, noise).abs().max() < wrong.loss(model, x0, t, noise).abs().max()


def test_the_book_s_ddpm_read_from_its_own_scheduler_is_the_same_family():
    """DDPM's linear scheduler read by from_scheduler: the same loss, bit for bit, and the same
    probability-flow drift away from t = 0. Near t = 0 they differ by design: the book's DDPM
    follows score_sde (the continuous VP noise level at t, the network asked at label t (N - 1),
    one step below the level it was trained at there), while the scheduler's family reads the
    schedule's own abar at the label, the level the network was trained at."""
    book = diffusion.DDPM()
    read = diffusion.from_scheduler(book.scheduler)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    model = lambda x, t: net(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 1000)  # noqa: E731
    gen = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1, torch.randn(4, 1, 8, 8, generator=gen)
    t = torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        assert torch.equal(read.loss(model, x0, t, noise), book.loss(model, x0, t, noise))
        for time in (0.3, 0.7, 0.99):
            tt = torch.full((4,), time, dtype=torch.float64)
            ours, theirs = read.ode_drift(model, x0, tt), book.ode_drift(model, x0, tt)
            assert (ours - theirs).norm() / theirs.norm() < 2e-2, time


def test_a_scheduler_without_a_variance_preserving_schedule_or_with_an_unknown_prediction_is_refused():
    from diffusers import ScoreSdeVeScheduler

    with pytest.raises(ValueError, match="alphas_cumprod"):
        own.family_from_scheduler(ScoreSdeVeScheduler())
    scheduler = DDIMScheduler()
    scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction type 'flow'"):
        own.family_from_scheduler(scheduler)


def _save_images(folder: Path, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")


@pytest.mark.heavy
def test_the_page_code_runs_on_a_model_saved_with_save_pretrained(tmp_path, monkeypatch):
    """book/own_model.md's code blocks, run as written (only the paths are this test's): a small
    UNet with a cosine schedule and v-prediction, members and nonmembers as PNG folders."""
    from diffusers import DDPMPipeline, UNet2DModel
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "my-diffusion-model")
    digits = (load_digits().images * (255 / 16)).astype(np.uint8)
    _save_images(tmp_path / "training-images", digits[:12])
    _save_images(tmp_path / "held-out-images", digits[100:112])
    page = (ROOT / "book/own_model.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    assert len(blocks) == 2
    code = "\n".join(blocks)
    code = code.replace("own.attack(model, family, members, nonmembers)",
                        "own.attack(model, family, members, nonmembers, settings=miakit.core.config.resolve('smoke'), "
                        "progress_bar=False)")  # the smoke profile's grids: seconds, not minutes
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile("import miakit\n" + code, "book/own_model.md", "exec"), namespace)
    table = namespace["result"].table()
    assert str(namespace["result"]) == table.to_string()  # print(result) shows the table in a script
    assert list(table.index) == ["loss", "likelihood", "SecMI (stat)", "PIA", "PIAN", "SimA"]
    assert all(re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", v) for v in table["AUC [95%]"])
    # 6 test nonmembers cannot show 1% or 0.1%: the columns are left out and named
    assert table.attrs["unmeasurable"] == ["TPR@1%FPR [95%]", "TPR@0.1%FPR [95%]"]
    assert (tmp_path / "roc.png").stat().st_size > 0
    assert namespace["members"].shape == (12, 1, 8, 8) and namespace["members"].min() >= -1
    split = namespace["result"].split
    assert set(split.members) == set(range(12)) and set(split.nonmembers) == set(range(12, 24))


def test_reference_attacks_and_mismatched_images_are_refused_before_scoring():
    family = own.family_from_scheduler(DDPMScheduler(num_train_timesteps=10))
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match="reference models"):
        own.attack(lambda x, t: x, family, x, x, names=("reference",))
    with pytest.raises(ValueError, match="members are"):
        own.attack(lambda x, t: x, family, x, torch.zeros(4, 3, 8, 8), names=("loss",))


# ------------------------------------------------ input checks: every refusal comes before the model runs
class _Unrunnable:
    """A model that only has a diffusers config: calling it fails the test (a check came too late)."""

    def __init__(self, sample_size=8, in_channels=1, down_block_types=("DownBlock2D", "DownBlock2D")):
        from types import SimpleNamespace
        self.config = SimpleNamespace(sample_size=sample_size, in_channels=in_channels, down_block_types=down_block_types)

    def __call__(self, *args, **kwargs):
        raise AssertionError("the model ran before the input was checked")


def _images(n, size=8, channels=1, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


FAMILY = own.family_from_scheduler(DDPMScheduler(num_train_timesteps=10))


@pytest.mark.parametrize("members, message", [
    ((_images(20) * 127.5 + 127.5).to(torch.uint8), "torch.uint8 images"),
    ((_images(20) + 1) / 2, r"none negative: images in \[0, 1\]"),
    (_images(20) * 3, r"scaled to \[-1, 1\]"),
    (torch.full((20, 1, 8, 8), float("nan")), "NaN"),
    (_images(20)[:, 0], r"tensor of images \[N, C, H, W\]"),
])
def test_images_outside_the_model_s_range_or_type_are_refused(members, message):
    with pytest.raises(ValueError, match=message):
        own.attack(_Unrunnable(), FAMILY, members, _images(20, seed=1), names=("loss",), progress_bar=False)


def test_images_of_another_size_or_a_size_the_unet_cannot_halve_are_refused():
    with pytest.raises(ValueError, match="the images are 8x8, the model takes 16x16"):
        own.attack(_Unrunnable(sample_size=16), FAMILY, _images(20), _images(20, seed=1), names=("loss",))
    with pytest.raises(ValueError, match="multiples of 2; 15x15 is not"):
        own.attack(_Unrunnable(sample_size=15), FAMILY, _images(20, 15), _images(20, 15, seed=1), names=("loss",))
    with pytest.raises(ValueError, match="the model takes 3"):
        own.attack(_Unrunnable(in_channels=3), FAMILY, _images(20), _images(20, seed=1), names=("loss",))


def test_too_few_images_are_refused_and_unmeasurable_tprs_announced():
    with pytest.raises(ValueError, match="each part needs at least 5 .* give at least 10 members"):
        own.attack(_Unrunnable(), FAMILY, _images(2), _images(2, seed=1), names=("loss",))
    with pytest.raises(ValueError, match="give at least 25 nonmembers"):  # 20% of 12 = 2 for validation
        own.attack(_Unrunnable(), FAMILY, _images(40), _images(12, seed=1), names=("loss",), val_fraction=0.2)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        own.attack(_Unrunnable(), FAMILY, _images(20), _images(20, seed=1), names=("loss",), val_fraction=1)
    # enough for an AUC, too few test nonmembers for TPR at 1% and 0.1% FPR: said before the model runs
    with pytest.warns(UserWarning, match="TPR at 1% FPR needs at least 100 test nonmembers; 20 nonmembers give 10 "
                                         r"\(val_fraction 0.5\): give at least 200 nonmembers") as caught:
        with pytest.raises(AssertionError, match="the model ran"):
            own.attack(_Unrunnable(), FAMILY, _images(20), _images(20, seed=1), names=("loss",), progress_bar=False)
    assert any("0.1% FPR needs at least 1000" in str(w.message) for w in caught)


def test_load_images_refuses_upsampling_and_speaks_of_its_own_arguments(tmp_path):
    from PIL import Image

    (tmp_path / "small").mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(tmp_path / "small" / f"{i}.png")
    model = _Unrunnable(sample_size=8)
    with pytest.raises(ValueError, match=r"3 image\(s\) under .* smaller than the model's 8x8 \(e.g. 0.png: 4x4\)"):
        own.load_images(tmp_path / "small", model)
    assert own.load_images(tmp_path / "small", model, upsample=True).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="is not a folder") as err:
        own.load_images(tmp_path / "missing", model)
    assert "dataset=" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images") as err:
        own.load_images(tmp_path / "empty", model)
    assert "dataset=" not in str(err.value)
