import gzip
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from miakit.core import config, data


def test_digits_have_their_labels_and_unused_images():
    ds = data.load("digits", 8)
    assert ds.labels.shape == (1797,) and set(ds.labels.tolist()) == set(range(10))
    split = data.make_split("digits", 1797, 20, 30, 0.5, 3)
    assert len(split.unused) == 1797 - 50
    assert not set(split.unused) & (set(split.members) | set(split.nonmembers))


def test_digits_in_unit_range_at_any_resolution():
    ds = data.load("digits", 16)
    assert ds.images.shape == (1797, 1, 16, 16) and ds.images.dtype == torch.float32
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert ds.images.min() == -1 and ds.images.max() > 0.9  # the full range is used
    assert data.load("digits", 8).images.shape == (1797, 1, 8, 8)


def test_unknown_dataset_is_an_error():
    with pytest.raises(data.DatasetError, match="unknown dataset 'cifar'"):
        data.load("cifar", 8)


def test_split_is_disjoint_deterministic_and_seeded():
    a = data.make_split("digits", 1797, 100, 1000, 0.5, seed=0)
    b = data.make_split("digits", 1797, 100, 1000, 0.5, seed=0)
    c = data.make_split("digits", 1797, 100, 1000, 0.5, seed=1)
    assert len(a.members) == 100 and len(a.nonmembers) == 1000
    assert len(a.members_val) == 50 and len(a.nonmembers_test) == 500
    assert not set(a.members) & set(a.nonmembers)
    assert not set(a.members_val) & set(a.members_test)
    assert np.array_equal(a.members, b.members) and np.array_equal(a.nonmembers, b.nonmembers)
    assert not np.array_equal(a.members, c.members)


def test_split_larger_than_data_is_an_error():
    with pytest.raises(data.DatasetError, match="has only 100 images"):
        data.make_split("x", 100, 60, 50, 0.5, 0)


def test_overlap_is_caught():
    bad = data.Split("x", 10, 0, np.array([1, 2]), np.array([3]), np.array([3, 4]), np.array([5]))
    with pytest.raises(AssertionError, match="overlap"):
        bad.check()
    with pytest.raises(AssertionError, match="overlap"):
        data.Split.from_json(bad.to_json())


def test_split_manifest_round_trip(tmp_path):
    split = data.make_split("digits", 1797, 20, 30, 0.5, 3)
    data.save_split(split, tmp_path / "split.json")
    back = data.load_split(tmp_path / "split.json")
    assert back.to_json() == split.to_json()


def write_idx(path, images):
    n, h, w = images.shape
    header = (0x803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
    with gzip.open(path, "wb") as fh:
        fh.write(header + images.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.full((3, 28, 28), 255))
    ds = data.load(f"fashion-mnist:{tmp_path}", 16)
    assert ds.images.shape == (8, 1, 16, 16)
    assert torch.allclose(ds.images[-1], torch.ones(1, 16, 16))
    assert ds.labels is None  # no label files: images only
    for stem, values in (("train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4]), ("t10k-labels-idx1-ubyte.gz", [9, 8, 7])):
        with gzip.open(tmp_path / stem, "wb") as fh:
            fh.write((0x801).to_bytes(4, "big") + len(values).to_bytes(4, "big") + bytes(values))
    assert data.load(f"fashion-mnist:{tmp_path}", 16).labels.tolist() == [0, 1, 2, 3, 4, 9, 8, 7]


def test_fashion_mnist_missing_names_the_package(tmp_path):
    with pytest.raises(data.DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        data.load(f"fashion-mnist:{tmp_path}", 16)


def test_truncated_idx_is_an_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((5, 4, 4)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(data.DatasetError, match="truncated"):
        data.read_idx_images(path)


@pytest.mark.skipif(not (data.FASHION_MNIST_DIR / data.FASHION_MNIST_FILES[0]).exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = data.load("fashion-mnist", 8)
    assert ds.images.shape == (70000, 1, 8, 8)
    assert ds.labels.shape == (70000,) and set(ds.labels.tolist()) == set(range(10))


def test_image_folder_rgb_and_gray(tmp_path):
    rgb, gray = tmp_path / "rgb", tmp_path / "gray"
    rgb.mkdir(), gray.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(rgb / "a.png")
    Image.new("L", (20, 20), 0).save(rgb / "b.jpg")
    (rgb / "notes.txt").write_text("not an image")
    Image.new("L", (20, 20), 255).save(gray / "c.png")
    ds = data.load(f"folder:{rgb}", 8)
    assert ds.images.shape == (2, 3, 8, 8)
    assert torch.allclose(ds.images[0, 0], torch.ones(8, 8)) and torch.allclose(ds.images[0, 1], -torch.ones(8, 8))
    assert data.load(f"folder:{gray}", 8).images.shape == (1, 1, 8, 8)


def test_image_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="unreadable"):
        with pytest.raises(data.DatasetError, match="no readable images"):
            data.load(f"folder-skip-unreadable:{tmp_path}", 8)
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'missing'}", 8)


def test_subsets_are_seeded_random_draws_not_the_first_k():
    """A subset of a sorted part must not be its first k (the lowest dataset indices: in the
    digits set, a few writers); it is a random draw spanning the part, nested and repeatable."""
    split = data.make_split("digits", 1797, 100, 1000, 0.5, 0)
    for part in data.PARTS + data.UNIONS:
        whole = getattr(split, part)
        k = len(whole) // 4
        sub = split.subset(part, k)
        assert len(sub) == k and len(np.unique(sub)) == k and np.isin(sub, whole).all()
        assert not np.array_equal(sub, whole[:k]), part
        # the draw spans the part: its indices' mean is near the part's, far from the first k's
        assert abs(sub.mean() - whole.mean()) < abs(whole[:k].mean() - whole.mean()) / 2, part
        assert np.array_equal(split.subset(part, k), sub)  # seeded
        assert np.isin(split.subset(part, k // 2), sub).all()  # nested
    assert np.array_equal(split.subset("members_test", None), split.members_test)
    assert np.array_equal(split.subset("members_test", 10 ** 6), split.members_test)
    other = data.make_split("digits", 1797, 100, 1000, 0.5, 1)
    assert not np.array_equal(other.subset("nonmembers_test", 50), split.subset("nonmembers_test", 50))
    with pytest.raises(ValueError, match="unknown split part"):
        split.subset("train", 5)


def gradient8(h=30, w=40):
    """An 8-bit test picture: a diagonal gradient with a bright square, 0..255."""
    y, x = np.mgrid[0:h, 0:w]
    picture = (x * 255 // (w - 1) + y * 3) % 256
    picture[5:12, 8:20] = 250
    return picture.astype(np.uint8)


def test_deep_images_load_by_their_real_range(tmp_path):
    """16-bit PNGs, 16-bit PGMs (Pillow mode "I") and float TIFFs of one picture load like its 8-bit PNG."""
    picture = gradient8()
    loaded = {}
    for kind, image in (("png8", Image.fromarray(picture)),
                        ("png16", Image.fromarray(picture.astype(np.uint16) * 257)),
                        ("pgm16", Image.fromarray(picture.astype(np.uint16) * 257)),
                        ("tif32f", Image.fromarray(picture.astype(np.float32) / 255.0))):
        folder = tmp_path / kind
        folder.mkdir()
        image.save(folder / f"x.{kind[:3]}")
        ds = data.load(f"folder:{folder}", 16)
        assert ds.images.shape == (1, 1, 16, 16), kind
        loaded[kind] = ds.images
    assert Image.open(tmp_path / "png16" / "x.png").mode == "I;16"
    assert Image.open(tmp_path / "pgm16" / "x.pgm").mode == "I"
    assert Image.open(tmp_path / "tif32f" / "x.tif").mode == "F"
    for kind in ("png16", "pgm16", "tif32f"):  # in [-1, 1] a pixel step of 1/255 is 2/255
        assert (loaded[kind] - loaded["png8"]).abs().max() <= 2 / 255, kind  # 1/255 in [0, 1]
        assert loaded[kind].min() >= -1 and loaded[kind].max() <= 1


def test_deep_gray_in_an_rgb_folder_fills_all_channels(tmp_path):
    picture = gradient8()
    Image.fromarray(picture.astype(np.uint16) * 257).save(tmp_path / "a.png")
    Image.fromarray(np.stack([picture] * 3, axis=2)).save(tmp_path / "b.png")
    ds = data.load(f"folder:{tmp_path}", 16)
    assert ds.images.shape == (2, 3, 16, 16)
    assert (ds.images[0] - ds.images[1]).abs().max() <= 2 / 255


def test_float_image_outside_unit_range_is_an_error(tmp_path):
    ramp = np.linspace(0, 1000, 20 * 20, dtype=np.float32).reshape(20, 20)
    Image.fromarray(ramp).save(tmp_path / "depth.tif")
    with pytest.raises(data.DatasetError, match=r"depth\.tif.*\[0, 1000\]"):
        data.load(f"folder:{tmp_path}", 8)


def test_int32_image_outside_16_bits_is_an_error(tmp_path):
    Image.fromarray(np.full((20, 20), 70000, dtype=np.int32)).save(tmp_path / "counts.tif")
    assert Image.open(tmp_path / "counts.tif").mode == "I"
    with pytest.raises(data.DatasetError, match=r"counts\.tif.*\[70000, 70000\]"):
        data.load(f"folder:{tmp_path}", 8)


def test_nan_pixel_is_an_error_naming_image_and_file(tmp_path):
    Image.fromarray(np.full((20, 20), 0.5, dtype=np.float32)).save(tmp_path / "a.tif")
    bad = np.full((20, 20), 0.5, dtype=np.float32)
    bad[3, 4] = np.nan
    Image.fromarray(bad).save(tmp_path / "b.tif")
    with pytest.raises(data.DatasetError, match=r"image 1 \(.*b\.tif\) has NaN"):
        data.load(f"folder:{tmp_path}", 8)


def test_non_finite_pixel_in_any_dataset_is_an_error(monkeypatch):
    images, labels = data._digits()
    images = images.clone()
    images[7, 0, 2, 2] = float("inf")
    monkeypatch.setattr(data, "_digits", lambda: (images, labels))
    with pytest.raises(data.DatasetError, match="image 7 has NaN or infinite"):
        data.load("digits", 8)


@pytest.mark.parametrize("keep", [5, 20, -8, -1])
def test_truncated_gzip_idx_names_the_file(tmp_path, keep):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (50, 28, 28)))
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(data.DatasetError, match=re.escape(str(path)) + ".*truncated or corrupt.*dataset-fashion-mnist"):
        data.read_idx_images(path)


def test_fingerprint_follows_the_pixels_of_the_subset():
    ds = data.load("digits", 8)
    subset = np.array([3, 10, 500])
    fp = ds.fingerprint(subset)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert data.Dataset("digits", ds.images.clone()).fingerprint(subset) == fp  # same pixels, same name or not
    assert ds.fingerprint(list(subset)) == fp and ds.fingerprint(torch.tensor(subset)) == fp
    assert ds.fingerprint() == ds.fingerprint(np.arange(len(ds))) != fp
    changed = ds.images.clone()
    changed[10, 0, 4, 4] += 1e-3
    assert data.Dataset("digits", changed).fingerprint(subset) != fp
    outside = ds.images.clone()
    outside[11] = 0.0
    assert data.Dataset("digits", outside).fingerprint(subset) == fp
    assert ds.fingerprint(np.array([3, 10, 501])) != fp
    assert data.load("digits", 16).fingerprint(subset) != fp
    # the same in a fresh process (no per-process hash seed)
    code = ("import numpy as np; from miakit import data; "
            "print(data.load('digits', 8).fingerprint(np.array([3, 10, 500])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == fp
    with pytest.raises(IndexError):
        ds.fingerprint([len(ds)])


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Hugging Face ``datasets`` with its cache under tmp_path and the hub switched off: nothing
    can be downloaded."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return datasets


def _hub_folder(datasets, folder, images, labels):
    """A CIFAR-10-like dataset as the hub serves it (a parquet file of a 'train' split, an image
    column and a class-label column), written to ``folder``."""
    ds = datasets.Dataset.from_dict({"img": images, "label": labels}, features=datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog", "ship"])}))
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))


def test_hugging_face_dataset_loads_its_pixels_and_labels(tmp_path, offline_hub):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    _hub_folder(offline_hub, tmp_path / "cifar", [Image.fromarray(p) for p in pixels], [i % 3 for i in range(12)])
    ds = data.load(f"hf:{tmp_path / 'cifar'}", 32)
    assert ds.images.shape == (12, 3, 32, 32)
    assert torch.equal(ds.labels, torch.tensor([i % 3 for i in range(12)]))
    expected = torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 * 2 - 1)
    assert torch.allclose(ds.images, expected, atol=1e-6)  # every pixel, unchanged at the native size
    assert data.load(f"hf:{tmp_path / 'cifar'}@train", 16).images.shape == (12, 3, 16, 16)
    with pytest.raises(data.DatasetError, match="split 'test'"):
        data.load(f"hf:{tmp_path / 'cifar'}@test", 32)
    with pytest.raises(data.DatasetError, match="write hf:"):
        data.load("hf:", 32)


def test_named_hub_dataset_reads_its_repository(tmp_path, offline_hub, monkeypatch):
    """``cifar10`` is read from its hub repository (here a local stand-in: nothing downloads),
    and a missing one is a DatasetError naming it."""
    rng = np.random.default_rng(1)
    _hub_folder(offline_hub, tmp_path / "c10", [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                                                for _ in range(4)], [0, 1, 2, 0])
    monkeypatch.setattr(data, "HUB", {"cifar10": (str(tmp_path / "c10"), "train")})
    monkeypatch.setattr(data, "_LOADED", {})
    assert data.load("cifar10", 32).images.shape == (4, 3, 32, 32)
    monkeypatch.setattr(data, "HUB", {"cifar10": (str(tmp_path / "absent"), "train")})
    monkeypatch.setattr(data, "_LOADED", {})
    with pytest.raises(data.DatasetError, match="could not load"):
        data.load("cifar10", 32)


def test_a_folder_with_corrupt_images_is_refused_naming_each_unless_asked_to_skip_them(tmp_path):
    from PIL import Image

    for i in range(4):
        Image.new("L", (10, 10), 40 * i).save(tmp_path / f"ok{i}.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "sub" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data.DatasetError, match=r"2 unreadable image file\(s\).*broken\.png.*sub/bad\.jpg.*"
                                                r"folder-skip-unreadable:"):
        data.load(f"folder:{tmp_path}", 8)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        assert data.load(f"folder-skip-unreadable:{tmp_path}", 8).images.shape[0] == 4
    config.resolve("smoke", dataset=f"folder-skip-unreadable:{tmp_path}")  # a valid dataset form


def test_a_packaged_dataset_is_decoded_once_per_process_and_again_when_its_files_change(tmp_path):
    import os

    assert data.load("digits", 8) is data.load("digits", 8)
    assert data.load("digits", 4) is not data.load("digits", 8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    first = data.load(f"fashion-mnist:{tmp_path}", 8)
    assert data.load(f"fashion-mnist:{tmp_path}", 8) is first
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.full((3, 28, 28), 255))  # replaced: read again
    os.utime(tmp_path / "t10k-images-idx3-ubyte.gz", ns=(1, 1))
    second = data.load(f"fashion-mnist:{tmp_path}", 8)
    assert second is not first and second.images.shape == (7, 1, 8, 8) and torch.allclose(second.images[-1], torch.ones(1, 8, 8))
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img" / "a.png")
    assert data.load(f"folder:{tmp_path / 'img'}", 8) is not data.load(f"folder:{tmp_path / 'img'}", 8)  # read each time
