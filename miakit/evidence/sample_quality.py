"""Sample quality that runs offline on a CPU: a Frechet distance in a small classifier's features.

This is NOT Inception FID. A small CNN is trained to classify images of the target's own
dataset, using only images that are neither members nor nonmembers of the split (so it never
saw an image the attacks score), and the Frechet distance between Gaussians fitted to its
penultimate features compares generated images with real ones (the test nonmembers). Lower is
better; the distance between two halves of the real nonmembers, at the same sample size, is
the floor a perfect generator would reach. Datasets without labels (image folders) have no such
classifier: ``classifier`` then raises with a message saying so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miakit.core import colab
from miakit.core.config import stable_hash
from miakit.core.store import read_tensors, write_cache, write_tensors

FEATURES = 64
CLASSIFIER_ITERATIONS = 600


class FeatureNet(torch.nn.Module):
    """A small CNN classifier; ``features`` gives its penultimate activations."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 32, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(64, 64, 3, stride=2, padding=1), torch.nn.SiLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(64, FEATURES), torch.nn.SiLU())
        self.head = torch.nn.Linear(FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class Classifier:
    net: FeatureNet
    accuracy: float  # on the test nonmembers (images it was not trained on)
    n_train: int

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 512) -> np.ndarray:
        self.net.eval()
        return torch.cat([self.net.features(images[i:i + batch].float()) for i in range(0, len(images), batch)]).double().numpy()


def classifier(run, runs_dir: str | Path | None = None, progress_bar: bool = False) -> Classifier:
    """The feature classifier for ``run``'s dataset and split, trained on the split's unused
    images (cached under ``runs_dir``/classifiers)."""
    ds, split = run.dataset, run.split
    if ds.labels is None:
        raise ValueError(f"dataset {ds.name!r} has no class labels, so no feature classifier can be trained for "
                         "the Frechet distance; use a labelled dataset (digits, fashion-mnist) or Inception FID")
    train_idx = split.unused
    if len(train_idx) < 50:
        raise ValueError(f"only {len(train_idx)} images are neither members nor nonmembers; the feature classifier "
                         "needs at least 50 (use fewer nonmembers)")
    n_classes = int(ds.labels.max()) + 1
    # keyed by the content of the images it is trained on (their fingerprint covers the indices)
    key = stable_hash({"dataset": ds.name, "images": ds.fingerprint(train_idx), "labels": ds.labels[torch.as_tensor(
        train_idx)].tolist(), "iterations": CLASSIFIER_ITERATIONS})
    path = colab.runs_root(str(runs_dir or run.settings.runs_dir)) / "classifiers" / f"features-{key}.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the initial weights depend on nothing else
        net = FeatureNet(ds.images.shape[1], n_classes)
    if path.exists():
        net.load_state_dict(read_tensors(path))
    else:
        _fit(net, ds.images[torch.as_tensor(train_idx)], ds.labels[torch.as_tensor(train_idx)])
        write_cache(path, lambda p: write_tensors(p, net.state_dict(), {"dataset": ds.name}))
    test = torch.as_tensor(split.nonmembers_test)
    with torch.no_grad():
        accuracy = float((net.eval()(ds.images[test]).argmax(1) == ds.labels[test]).float().mean())
    return Classifier(net, accuracy, len(train_idx))


def _fit(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(CLASSIFIER_ITERATIONS):
        idx = torch.randint(0, len(images), (min(128, len(images)),), generator=gen)
        x = images[idx] + 0.05 * torch.randn(images[idx].shape, generator=gen)  # robust to sampler noise
        loss = torch.nn.functional.cross_entropy(net(x), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` and ``b``:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 feature rows on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular product: regularise as pytorch-fid does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


def inception_fid(generated: torch.Tensor, real: torch.Tensor) -> tuple[float | None, str]:
    """Inception FID (torchmetrics, 2048-d pool features) of images in [-1, 1], or (None, why
    it was skipped): torchmetrics[image] missing, or the Inception weights not loadable (they are
    downloaded on first use, which fails offline)."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        return None, ("Inception FID skipped: torchmetrics[image] is not installed "
                      "(pip install 'miakit[paper]' or 'torchmetrics[image]')")
    try:
        fid = FrechetInceptionDistance(feature=2048, normalize=True)
    except Exception as err:  # noqa: BLE001 - any failure to fetch or load the weights means: skip
        return None, f"Inception FID skipped: the Inception weights could not be loaded ({type(err).__name__}: {err})"

    def rgb01(x: torch.Tensor) -> torch.Tensor:
        x = ((x.float().clamp(-1, 1) + 1) / 2).cpu()
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    for batch in range(0, len(real), 256):
        fid.update(rgb01(real[batch:batch + 256]), real=True)
    for batch in range(0, len(generated), 256):
        fid.update(rgb01(generated[batch:batch + 256]), real=False)
    return float(fid.compute()), "Inception FID (torchmetrics, 2048-d pool3 features)"
