import numpy as np
import pytest
import torch

from miakit import attacks, diffusion
from miakit.chapters import loss_and_likelihood
from miakit.core.data import PARTS


@pytest.fixture(scope="module")
def ddpm():
    return diffusion.family("ddpm")


def zero_data_oracle(ddpm):
    """Exact denoiser for data concentrated at 0: a 'model' that memorised the all-zero image."""
    abar = ddpm.alphas_cumprod
    return lambda x, t: x / (1 - abar[t]).sqrt().reshape(-1, 1, 1, 1).float()


def test_scores_are_oriented_higher_for_members(ddpm):
    member = torch.zeros(1, 1, 4, 4)
    others = torch.rand(5, 1, 4, 4) * 2 - 1
    steps = ddpm.attack_steps(6)
    scores = attacks.loss_scores(zero_data_oracle(ddpm), ddpm, torch.cat([member, others]), steps, n_noise=2,
                                 progress_bar=False)
    assert scores.shape == (6, len(steps))
    assert np.all(scores[0] > scores[1:].max(axis=0))  # the memorised image scores highest at every step
    assert np.allclose(scores[0], 0.0, atol=1e-10)


def test_deterministic_and_batch_independent(smoke_run):
    fam, x = smoke_run.family, smoke_run.images(smoke_run.split.members[:5])
    steps = fam.attack_steps(4)
    a = attacks.loss_scores(smoke_run.model, fam, x, steps, n_noise=3, seed=1, progress_bar=False)
    b = attacks.loss_scores(smoke_run.model, fam, x, steps, n_noise=3, seed=1, batch_size=7, progress_bar=False)
    c = attacks.loss_scores(smoke_run.model, fam, x, steps, n_noise=3, seed=2, progress_bar=False)
    assert np.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a, c)
    # one image's scores do not depend on the others scored with it
    alone = attacks.loss_scores(smoke_run.model, fam, x[:1], steps, n_noise=3, seed=1, progress_bar=False)
    assert np.allclose(alone, a[:1], rtol=1e-5, atol=1e-7)


def test_noise_draws_are_averaged(smoke_run):
    fam, x = smoke_run.family, smoke_run.images(smoke_run.split.members[:3])
    raw = attacks.losses(smoke_run.model, fam, x, [0, 500], n_noise=4, progress_bar=False)
    assert raw.shape == (3, 2, 4)
    scores = attacks.loss_scores(smoke_run.model, fam, x, [0, 500], n_noise=4, progress_bar=False)
    assert np.allclose(scores, -raw.mean(axis=2))


def test_empty_input_is_an_error(ddpm):
    with pytest.raises(ValueError, match="at least one image"):
        attacks.loss_scores(zero_data_oracle(ddpm), ddpm, torch.zeros(0, 1, 4, 4), [0], progress_bar=False)


def test_roc_steps_scale_with_the_process():
    ddpm = diffusion.family("ddpm")
    assert loss_and_likelihood.roc_steps(np.arange(1000), ddpm) == [0, 200, 500, 600, 800, 999]
    assert loss_and_likelihood.roc_steps(np.array([0, 100, 250, 500, 750, 999]), ddpm) == [0, 250, 500, 750, 999]
    short = diffusion.DDPM(n=100)
    assert loss_and_likelihood.roc_steps(np.arange(100), short) == [0, 20, 50, 60, 80, 99]
    vp = diffusion.family("vpsde")
    grid = vp.attack_steps(11)
    assert loss_and_likelihood.roc_steps(grid, vp) == pytest.approx([grid[0], grid[2], grid[5], grid[6], grid[8], grid[10]])
    assert loss_and_likelihood.step_label(grid[2].item()) == "t = 0.2" and loss_and_likelihood.step_label(7) == "t = 7"


def test_loss_attack_study_chooses_on_validation(smoke_run):
    study = loss_and_likelihood.loss_attack_study(smoke_run, progress_bar=False)
    n_steps = len(study.steps)
    assert {k: v.shape for k, v in study.scores.items()} == {
        p: (len(getattr(smoke_run.split, p)), n_steps) for p in PARTS}
    summary = study.summary()
    val_aucs = [r.auc for r in study.val]
    assert summary["best_step_val"] == study.steps[int(np.argmax(val_aucs))]
    assert summary["result_test_chosen"].auc == max(r.auc for r in study.test)
    table = study.headline_table(smoke_run.family)
    assert "AUC" in table.columns and "TPR@10%FPR" in table.columns
    # the paper's convention has the test members as negatives: too few to show 10% at smoke, left out
    assert len(smoke_run.split.members_test) < 10 and "paper TPR@10%FPR" in table.attrs["unmeasurable"]
    assert any(label.startswith("best on validation") for label in table.index)
    cached = loss_and_likelihood.loss_attack_study(smoke_run, progress_bar=False)  # loaded from the run folder
    assert all(np.array_equal(cached.scores[p], study.scores[p]) for p in PARTS)
