"""Image datasets as float tensors in [-1, 1], and the disjoint member/nonmember split.

Datasets (the ``dataset`` parameter):

- ``digits`` — scikit-learn's 1797 handwritten digits (8x8, grayscale), always available.
- ``fashion-mnist`` or ``fashion-mnist:<dir>`` — the 70,000 Fashion-MNIST images (28x28) from
  the IDX files of Debian's ``dataset-fashion-mnist`` package, or any folder holding them.
- ``folder:<path>`` — every image under a folder (FFHQ thumbnails, retina images),
  centre-cropped to a square and resized (bicubic); grayscale when every image is grayscale,
  else RGB (gray images then fill all three channels). An unreadable file is an error naming
  each one; ``folder-skip-unreadable:<path>`` leaves them out (a smaller dataset, other runs).
- ``cifar10`` — CIFAR-10's 50,000 training images (32x32 RGB, with labels), read through Hugging
  Face ``datasets`` (``uoft-cs/cifar10``, fetched on first use: on Colab, not in tests), the data
  of SecMI, PIA and SimA. ``hf:<hub id or local folder>[@<split>]`` reads any such dataset the
  same way: its first image column, its first class-label column as labels. Images are loaded
  like folder images.

Pixel values of folder images are mapped to [0, 1] by their real range, never clipped:

- 8-bit images (``L``, ``RGB``, palette, ...) divide by 255.
- 16-bit grayscale (``I;16``, ``I;16B``, ...) divides by 65535.
- 32-bit integer grayscale (``I``; Pillow opens 16-bit PGMs so) is read as 16-bit data: its
  values must lie in [0, 65535] and are divided by 65535; any other range is a DatasetError.
- 32-bit float grayscale (``F``) must already lie in [0, 1]; any other range is a DatasetError
  naming the file (no per-image rescaling, which would change the data).

Every image is cropped and resized as a float image (one per channel), then clipped to [0, 1],
so the 8-bit, 16-bit and float versions of one picture give nearly the same tensor. Any dataset holding a
NaN or infinite pixel is a DatasetError naming the first such image (index, and file).
"""
from __future__ import annotations

import gzip
import hashlib
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from miakit.core.store import read_json, write_json

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
FASHION_MNIST_LABELS = ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
REINSTALL = ("reinstall it with `apt-get install --reinstall -y dataset-fashion-mnist` "
             "or download the IDX files again")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class DatasetError(ValueError):
    """The requested dataset is missing, empty or malformed."""


@dataclass(frozen=True)
class Dataset:
    name: str
    images: torch.Tensor  # [N, C, H, W], float32 in [-1, 1]
    labels: torch.Tensor | None = None  # [N] class labels where the dataset has them (not image folders)

    def __len__(self) -> int:
        return self.images.shape[0]

    def fingerprint(self, indices=None) -> str:
        """First 16 hex digits of a sha256 of the float32 bytes of ``images[indices]`` (all images
        when None, hashed as ``arange(len(self))``), their shape and the indices: the same on every
        machine and process for the same pixels, and different when any pixel of the subset changes."""
        index = np.arange(len(self)) if indices is None else np.asarray(indices)
        if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
            raise ValueError(f"fingerprint needs a 1-D array of integer indices, not {index.dtype} {index.shape}")
        index = index.astype("<i8")
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"fingerprint index outside the dataset of {len(self)} images")
        picked = self.images.detach().cpu()
        if indices is not None:
            picked = picked[torch.from_numpy(index)]
        pixels = np.ascontiguousarray(picked.numpy(), dtype="<f4")
        digest = hashlib.sha256(b"miakit-dataset-v1")
        digest.update(np.asarray(pixels.shape, dtype="<i8").tobytes())
        digest.update(index.tobytes())
        digest.update(pixels.reshape(-1).view(np.uint8))
        return digest.hexdigest()[:16]


_MEMO: dict[tuple, Dataset] = {}  # the packaged datasets, loaded once per process (``_memo_key``)


def _memo_key(name: str, resolution: int) -> tuple | None:
    """What a loaded packaged dataset depends on: scikit-learn's digits by ``resolution`` alone;
    Fashion-MNIST also by the path, size and modification time of each of its IDX files (and
    which are there), so a reinstalled or replaced file is read again; None for the others (an
    image folder is read on every call: its files may change)."""
    if name == "digits":
        return (name, resolution)
    if name == "fashion-mnist" or name.startswith("fashion-mnist:"):
        folder = Path(name.split(":", 1)[1]) if ":" in name else FASHION_MNIST_DIR
        found = [_find(folder, stem) for stem in FASHION_MNIST_FILES + FASHION_MNIST_LABELS]
        stats = tuple(None if p is None else (str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in found)
        return (name, resolution, stats)
    return None


def load(name: str, resolution: int) -> Dataset:
    """Load dataset ``name`` at ``resolution`` x ``resolution`` pixels, scaled to [-1, 1]. The
    packaged datasets (digits, Fashion-MNIST) are decoded once per process and the same
    ``Dataset`` is returned after (``_memo_key``; its tensors are shared, so callers never write
    into them): a chapter loads its dataset once per target, and the claims page over a hundred
    times."""
    key = _memo_key(name, resolution)
    if key is not None and key in _MEMO:
        return _MEMO[key]
    dataset = _load(name, resolution)
    if key is not None and len(_MEMO) < 16:  # a handful of resolutions at most; never grows without end
        _MEMO[key] = dataset
    return dataset


def _load(name: str, resolution: int) -> Dataset:
    if name == "digits":
        unit, labels = _digits()
    elif name == "fashion-mnist" or name.startswith("fashion-mnist:"):
        folder = Path(name.split(":", 1)[1]) if ":" in name else FASHION_MNIST_DIR
        unit, labels = _fashion_mnist(folder)
    elif name.startswith("folder:") or name.startswith(SKIP_UNREADABLE + ":"):
        unit, labels = _folder(Path(name.split(":", 1)[1]), resolution, skip=name.startswith(SKIP_UNREADABLE)), None
    elif name in HUB:  # a published dataset that does not change: decoded once per process
        if (name, resolution) not in _LOADED:
            _LOADED[(name, resolution)] = _hub(*HUB[name], resolution)
        unit, labels = _LOADED[(name, resolution)]
    elif name.startswith("hf:"):
        unit, labels = _hub(*hub_source(name), resolution)
    else:
        raise DatasetError(f"unknown dataset {name!r}; use {FORMS}")
    _require_finite(unit, name)
    return Dataset(name, resize(unit, resolution) * 2.0 - 1.0, labels)


FORMS = ("'digits', 'fashion-mnist[:<dir>]', 'folder:<path>', 'folder-skip-unreadable:<path>', 'cifar10' or "
         "'hf:<hub id or local folder>[@<split>]'")


def hub_source(name: str) -> tuple[str, str]:
    """(source, split) of an ``hf:<source>[@<split>]`` dataset name (split ``train`` by default)."""
    source, _, split = name[len("hf:"):].partition("@")
    if not source.strip() or (_ and not split.strip()):
        raise DatasetError(f"dataset {name!r}: write hf:<hub id or local folder>[@<split>], e.g. hf:uoft-cs/cifar10@train")
    return source, split or "train"


def _require_finite(images: torch.Tensor, name: str) -> None:
    """Raise DatasetError naming the first image of ``images`` with a NaN or infinite pixel."""
    bad = ~torch.isfinite(images.reshape(len(images), -1)).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise DatasetError(f"dataset {name!r}: image {first} has NaN or infinite pixel values "
                           f"({int(bad.sum())} image(s) in all)")


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize [N, C, H, W] images in [0, 1] to a square ``resolution`` (bilinear, antialiased)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                        align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.astype(np.float32) / 16.0
    return torch.from_numpy(pixels)[:, None], torch.from_numpy(digits.target.astype(np.int64))


def _read_idx(path: Path, magic: int, n_dims: int, what: str) -> np.ndarray:
    """An (optionally gzipped) IDX file with ``n_dims`` dimensions as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                           f"{REINSTALL}") from exc
    header = 4 + 4 * n_dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DatasetError(f"{path} is not an {what} file")
    shape = tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: expected {'x'.join(map(str, shape))} values; {REINSTALL}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_images(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) IDX3 image file into a uint8 array [N, H, W]."""
    return _read_idx(path, 0x00000803, 3, "IDX3 image")


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) IDX1 label file into a uint8 array [N]."""
    return _read_idx(path, 0x00000801, 1, "IDX1 label")


def _find(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / stem, folder / stem.removesuffix(".gz")) if p.exists()), None)


def _fashion_mnist(folder: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    parts = []
    for stem in FASHION_MNIST_FILES:
        found = _find(folder, stem)
        if found is None:
            raise DatasetError(
                f"Fashion-MNIST file {stem} not found in {folder}. Install it with "
                "`apt-get install -y dataset-fashion-mnist` or pass "
                "dataset='fashion-mnist:<folder holding the IDX files>'")
        parts.append(read_idx_images(found))
    pixels = np.concatenate(parts).astype(np.float32) / 255.0
    label_files = [_find(folder, stem) for stem in FASHION_MNIST_LABELS]
    labels = None
    if all(label_files):
        labels = torch.from_numpy(np.concatenate([read_idx_labels(p) for p in label_files]).astype(np.int64))
        if len(labels) != len(pixels):
            raise DatasetError(f"Fashion-MNIST in {folder}: {len(labels)} labels for {len(pixels)} images")
    return torch.from_numpy(pixels)[:, None], labels


SKIP_UNREADABLE = "folder-skip-unreadable"  # dataset='folder-skip-unreadable:<path>': leave unreadable files out


def _folder(folder: Path, resolution: int, skip: bool = False) -> torch.Tensor:
    """Every image under ``folder``; an unreadable one is a ``DatasetError`` naming each such
    file (the dataset, and with it the split, would shrink silently), unless ``skip``."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist; pass dataset='folder:<path to images>'")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images, read, skipped = [], [], []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()
                images.append(img.copy())
                read.append(path)
        except (UnidentifiedImageError, OSError):
            skipped.append(str(path.relative_to(folder)))
    if skipped and not skip:
        raise DatasetError(f"{len(skipped)} unreadable image file(s) in {folder}: {', '.join(skipped)}. Repair or "
                           f"remove them, or pass dataset='{SKIP_UNREADABLE}:{folder}' to leave them out (the dataset "
                           "then has fewer images, and its runs are other runs)")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {folder}: {', '.join(skipped)}")
    if not images:
        raise DatasetError(f"no readable images in {folder} (looked for {sorted(IMAGE_SUFFIXES)})")
    return _unit_images(images, read, resolution)


def _unit_images(images: list, names: list, resolution: int) -> torch.Tensor:
    """PIL images as one float tensor [N, C, resolution, resolution] in [0, 1] (``_unit_image``
    each): grayscale when every image is grayscale, else RGB. ``names`` say where each came from,
    for errors."""
    gray = all(img.mode in GRAY_MODES for img in images)
    arrays = [_unit_image(img, name, i, gray, resolution) for i, (img, name) in enumerate(zip(images, names))]
    stacked = np.stack(arrays)
    stacked = stacked[:, None] if gray else stacked.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stacked))


# named datasets read through Hugging Face ``datasets`` (fetched on first use, then cached by it):
# name -> (repository, split). CIFAR-10's 50,000 training images are the pool that SecMI, PIA and
# SimA split 25,000 / 25,000 into members and nonmembers.
HUB = {"cifar10": ("uoft-cs/cifar10", "train")}
_LOADED: dict = {}  # (name, resolution) -> (images, labels) of the HUB datasets loaded in this process


def _hub(source: str, split: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A Hugging Face dataset (a hub repository, or a local folder ``datasets.load_dataset``
    reads): its first image column, loaded like folder images (``_unit_image``), and its first
    class-label column as labels when it has one."""
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"dataset {source!r} is read with Hugging Face's `datasets` package: "
                           "pip install datasets (or miakit[hub])") from None
    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as err:  # not found, no network, no such split: say which dataset, keep the cause
        raise DatasetError(f"could not load {source!r} (split {split!r}) with datasets.load_dataset: {err}") from err
    image_columns = [k for k, f in ds.features.items() if isinstance(f, datasets.Image)]
    if not image_columns:
        raise DatasetError(f"{source!r} (split {split!r}) has no image column; its columns: {dict(ds.features)}")
    label_columns = [k for k, f in ds.features.items() if isinstance(f, datasets.ClassLabel)]
    if len(ds) == 0:
        raise DatasetError(f"{source!r} (split {split!r}) holds no images")
    images = ds[image_columns[0]]
    unit = _unit_images(images, [f"{source}[{split}][{i}]" for i in range(len(images))], resolution)
    labels = torch.as_tensor(np.asarray(ds[label_columns[0]], dtype=np.int64)) if label_columns else None
    return unit, labels


GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
# any other mode (rare) is converted to 8-bit gray or RGB by Pillow


def _unit_image(img, path: Path, index: int, gray: bool, resolution: int) -> np.ndarray:
    """One folder image as float32 in [0, 1] by its real range (see the module docstring), cropped
    and resized in float: [H, W] when ``gray``, else [H, W, 3]."""
    from PIL import Image

    if img.mode in EIGHT_BIT_MODES or img.mode not in GRAY_MODES:
        unit = np.asarray(img.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    elif img.mode == "F":
        unit = np.asarray(img, dtype=np.float32)
    else:  # "I;16*" (0..65535) or "I" (32-bit int, read as 16-bit data)
        values = np.asarray(img)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise DatasetError(f"image {index} ({path}): 32-bit integer pixels span [{low}, {high}], outside the "
                               "16-bit range [0, 65535]; save it as 8- or 16-bit, or as float in [0, 1]")
        unit = values.astype(np.float32) / 65535.0
    if not np.isfinite(unit).all():
        raise DatasetError(f"image {index} ({path}) has NaN or infinite pixel values")
    if unit.min() < 0.0 or unit.max() > 1.0:
        raise DatasetError(f"image {index} ({path}): float pixels span [{unit.min():g}, {unit.max():g}], not [0, 1]; "
                           "scale the file to [0, 1] (no per-image rescaling is done, it would change the data)")
    if not gray and unit.ndim == 2:
        unit = np.repeat(unit[:, :, None], 3, axis=2)
    channels = [unit] if gray else [unit[:, :, c] for c in range(3)]
    out = [np.asarray(_square(Image.fromarray(np.ascontiguousarray(ch)), resolution), dtype=np.float32)
           for ch in channels]
    return np.clip(out[0] if gray else np.stack(out, axis=2), 0.0, 1.0)


def _square(img, resolution: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)


PARTS = ("members_val", "nonmembers_val", "members_test", "nonmembers_test")
UNIONS = ("members", "nonmembers")  # validation and test part together
HELD_OUT = "unused"  # images in neither: no attack scores them (reference models, a trainer's own validation)


@dataclass(frozen=True)
class Split:
    """Disjoint index sets into one dataset.

    ``members`` train the target; ``nonmembers`` are held out. Each is cut again into a
    validation part (to choose attack settings such as the step) and a test part (to report).
    """

    dataset: str
    n_total: int
    seed: int
    members_val: np.ndarray
    members_test: np.ndarray
    nonmembers_val: np.ndarray
    nonmembers_test: np.ndarray

    @property
    def members(self) -> np.ndarray:
        return np.sort(np.concatenate([self.members_val, self.members_test]))

    @property
    def nonmembers(self) -> np.ndarray:
        return np.sort(np.concatenate([self.nonmembers_val, self.nonmembers_test]))

    @property
    def unused(self) -> np.ndarray:
        """Indices in neither members nor nonmembers (held out from every attack)."""
        return np.setdiff1d(np.arange(self.n_total), np.concatenate([self.members, self.nonmembers]))

    def subset(self, part: str, k: int | None = None) -> np.ndarray:
        """At most ``k`` indices of ``part`` (one of ``PARTS``, ``members`` / ``nonmembers`` for
        the validation and test parts together, or ``unused``, the images outside both; all when
        ``k`` is None or at least its size): a
        random draw seeded by the split's seed and the part's name. This is the one place where
        a study takes fewer images than a part holds, so no subset is ever "the first k" of a
        sorted part (which, in a dataset ordered by writer or class, is a sub-population). The
        draw is nested: the subset of k images is the first k of the subset of k + 1."""
        names = PARTS + UNIONS + (HELD_OUT,)  # a name's position seeds its draw: append, never reorder
        if part not in names:
            raise ValueError(f"unknown split part {part!r}; choose one of {names}")
        indices = getattr(self, part)
        if k is None or k >= len(indices):
            return indices
        if k < 1:
            raise ValueError(f"a subset needs at least one image, not {k}")
        order = np.random.default_rng(np.random.SeedSequence([self.seed, names.index(part), 0x5B5E7])).permutation(
            len(indices))
        return np.sort(indices[order[:k]])

    def reference_members(self, index: int, k: int) -> np.ndarray:
        """The ``k`` training images of reference model ``index`` (the reference-model attack): a
        random draw from ``unused``, seeded by the split's seed and the index, so no reference ever
        trains on an image that any attack scores. Different references draw independently (their
        sets may overlap, like the shadow models of LiRA); a clear error when ``unused`` is too small."""
        pool = self.unused
        if index < 0:
            raise ValueError(f"reference index must be >= 0, not {index}")
        if k > len(pool):
            raise DatasetError(
                f"a reference model trains on {k} images outside the evaluated split, but {self.dataset!r} has only "
                f"{len(pool)} unused images ({self.n_total} in all, {len(self.members)} members and "
                f"{len(self.nonmembers)} nonmembers scored): lower n_members or n_nonmembers, or set n_references=0")
        order = np.random.default_rng(np.random.SeedSequence([self.seed, 0x2EF, index])).permutation(len(pool))
        return np.sort(pool[order[:k]])

    def check(self) -> None:
        """Raise if any two parts share an index or an index lies outside the dataset."""
        parts = [self.members_val, self.members_test, self.nonmembers_val, self.nonmembers_test]
        joined = np.concatenate(parts)
        if len(np.unique(joined)) != len(joined):
            raise AssertionError("split parts overlap: a member is also a nonmember or appears twice")
        if len(joined) and (joined.min() < 0 or joined.max() >= self.n_total):
            raise AssertionError("split index outside the dataset")

    def same_as(self, other: "Split") -> bool:
        """Whether ``other`` holds the same dataset, seed and parts, image for image."""
        return (self.dataset, self.n_total, self.seed) == (other.dataset, other.n_total, other.seed) and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("members_val", "members_test", "nonmembers_val", "nonmembers_test"))

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "n_total": self.n_total, "seed": self.seed,
                **{k: getattr(self, k).tolist() for k in
                   ("members_val", "members_test", "nonmembers_val", "nonmembers_test")}}

    @classmethod
    def from_json(cls, payload: dict) -> "Split":
        split = cls(payload["dataset"], int(payload["n_total"]), int(payload["seed"]),
                    **{k: np.asarray(payload[k], dtype=np.int64) for k in
                       ("members_val", "members_test", "nonmembers_val", "nonmembers_test")})
        split.check()
        return split


def make_split(dataset: str, n_total: int, n_members: int, n_nonmembers: int,
               val_fraction: float, seed: int) -> Split:
    """Draw disjoint members and nonmembers, each cut into validation and test parts."""
    if n_members + n_nonmembers > n_total:
        raise DatasetError(
            f"split asks for {n_members} members + {n_nonmembers} nonmembers but {dataset!r} "
            f"has only {n_total} images")
    perm = np.random.default_rng(seed).permutation(n_total)
    members, nonmembers = perm[:n_members], perm[n_members:n_members + n_nonmembers]
    m_val, n_val = _n_val(n_members, val_fraction), _n_val(n_nonmembers, val_fraction)
    split = Split(dataset, n_total, seed,
                  np.sort(members[:m_val]), np.sort(members[m_val:]),
                  np.sort(nonmembers[:n_val]), np.sort(nonmembers[n_val:]))
    split.check()
    return split


def given_split(n_members: int, n_nonmembers: int, val_fraction: float, seed: int, dataset: str = "given") -> Split:
    """The split of images whose membership is known already (someone else's model: ``miakit.own``):
    indices 0..n_members-1 are the members and the next n_nonmembers the nonmembers, each cut into
    a validation and a test part by a random draw seeded by ``seed``."""
    if n_members < 2 or n_nonmembers < 2:
        raise DatasetError(f"{n_members} members and {n_nonmembers} nonmembers: each needs at least 2 images "
                           "(one to choose the attack settings on, one to report on)")
    rng = np.random.default_rng(seed)
    members, nonmembers = rng.permutation(n_members), n_members + rng.permutation(n_nonmembers)
    m_val, n_val = _n_val(n_members, val_fraction), _n_val(n_nonmembers, val_fraction)
    split = Split(dataset, n_members + n_nonmembers, seed, np.sort(members[:m_val]), np.sort(members[m_val:]),
                  np.sort(nonmembers[:n_val]), np.sort(nonmembers[n_val:]))
    split.check()
    return split


def _n_val(n: int, fraction: float) -> int:
    return min(max(1, int(round(n * fraction))), n - 1)


def save_split(split: Split, path) -> None:
    write_json(path, split.to_json())


def load_split(path) -> Split:
    return Split.from_json(read_json(path))
