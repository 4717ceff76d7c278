"""Classification datasets from a data root, in torchvision's native formats or as ImageFolder trees.

Small-image datasets (CIFAR, SVHN, Fashion-MNIST) become uint8 arrays (N, H, W, C) that the training code keeps
on the device; ImageFolder trees of small images are decoded once and cached. Large-image datasets (Caltech,
ImageNet) stay lists of files, read by DataLoader workers.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from core.lib.errors import UserError
from core.lib.seeding import numpy_rng
from core.lib.sources import make_source

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"
DATA_ROOT_ENV = "AL_DATA_ROOT"
CACHE_DIR_ENV = "AL_CACHE_DIR"

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
# The std that the LL4AL, TA-VAAL and LADA codes normalise with (TA-VAAL also for CIFAR-100): a widely copied
# per-image std rather than the dataset's pixel std above.
CIFAR10_CODE_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _take(items, indices: np.ndarray):
    if items is None:
        return None
    return items[indices] if isinstance(items, np.ndarray) else [items[i] for i in indices]


@dataclass
class Split:
    """One split: targets plus either decoded uint8 images (N, H, W, C) or image file paths; segmentation splits
    add masks, decoded (N, H, W) or as files."""

    targets: np.ndarray
    images: np.ndarray | None = None
    files: list[str] | None = None
    masks: np.ndarray | list[str] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, indices: np.ndarray) -> "Split":
        indices = np.asarray(indices)
        return Split(targets=self.targets[indices], images=_take(self.images, indices),
                     files=_take(self.files, indices), masks=_take(self.masks, indices))


@dataclass
class ImageDataset:
    name: str
    classes: list[str]
    train: Split
    test: Split | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    superclass_of_class: np.ndarray | None = None
    superclasses: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None

    @property
    def channels(self) -> int:
        return self.train.images.shape[-1] if self.in_memory else 3

    def make_source(self, split: Split, augmentation, device, workers: int = 2):
        """Batches of `split` on the device (segmentation datasets return a source that also crops masks)."""
        return make_source(split, self.mean, self.std, augmentation, device, workers)


def resolve_data_root(cli_value: str | None, create: bool = False) -> Path:
    """--data-root, else $AL_DATA_ROOT, else data/ in the project; `create` (downloads) makes the folder."""
    value = cli_value or os.environ.get(DATA_ROOT_ENV)
    root = Path(value).expanduser() if value else DEFAULT_DATA_ROOT
    if create:
        root.mkdir(parents=True, exist_ok=True)
    if root.is_dir():
        return root
    if not value:
        raise UserError(f"no data root: the default {root} does not exist; pass --data-root DIR or set "
                        f"{DATA_ROOT_ENV}=DIR (a folder with cifar10/, cifar100/, ... subfolders), or add --download")
    raise UserError(f"data root {root} is not a folder: pass --data-root DIR or set {DATA_ROOT_ENV} "
                    "to an existing folder")


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, Path(__file__).resolve().parents[2] / ".cache"))


# ---------------------------------------------------------------- ImageFolder trees

def list_image_folder(folder: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Class names (sorted, as torchvision's ImageFolder), file paths and targets of one tree."""
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise UserError(f"{folder} has no class folders: expected {folder}/<class>/<image> (ImageFolder layout)")
    files, targets = [], []
    for label, name in enumerate(classes):
        names = sorted(n for n in os.listdir(folder / name) if n.lower().endswith(IMAGE_SUFFIXES))
        files += [str(folder / name / n) for n in names]
        targets += [label] * len(names)
    return classes, files, np.asarray(targets, dtype=np.int64)


def _decode_rgb(path: str, channels: int) -> np.ndarray:
    """channels 3: RGB; 1: grayscale; 0: the stored values unconverted (label masks, palette indices).
    A file PIL cannot decode (truncated, not an image) is a user error naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image) if channels == 0 else np.asarray(image.convert("RGB" if channels == 3 else "L"))
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"image {path} cannot be read ({err}); replace or delete that file") from None
    return array if channels == 3 else array[..., None]


def _decode_chunk(paths: list[str], channels: int, shape: tuple) -> np.ndarray:
    images = []
    for path in paths:
        images.append(_decode_rgb(path, channels))
        if images[-1].shape != shape:
            raise UserError(f"image {path} is {images[-1].shape[1]}x{images[-1].shape[0]} but the dataset's first "
                            f"image is {shape[1]}x{shape[0]}; every image of a small-image dataset must have one size")
    return np.stack(images)


def decode_cached(files: list[str], channels: int, cache_dir: Path, workers: int = 2) -> np.ndarray:
    """Decode a list of equally sized images once; later calls read the cache keyed by file names and sizes."""
    try:
        listing = "\n".join(f"{f}:{os.path.getsize(f)}" for f in files)
    except OSError as err:
        raise UserError(f"image {err.filename} cannot be read ({err.strerror}); fix or delete that file") from None
    key = hashlib.sha1(f"{channels}\n{listing}".encode()).hexdigest()[:16]
    cache_file = cache_dir / f"decoded-{key}.npy"
    if cache_file.exists():
        return np.load(cache_file)
    if not files:
        raise UserError("an image folder holds no images (looked for " + ", ".join(IMAGE_SUFFIXES) + ")")
    shape = _decode_rgb(files[0], channels).shape
    chunks = [files[i:i + 2000] for i in range(0, len(files), 2000)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        images = np.concatenate(list(pool.map(_decode_chunk, chunks, [channels] * len(chunks),
                                              [shape] * len(chunks))))
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.partial.npy")
    np.save(partial, images)
    os.replace(partial, cache_file)
    return images


def image_folder_split(folder: Path, classes: list[str], decode: bool, channels: int, cache_dir: Path) -> Split:
    if not folder.is_dir():
        raise UserError(f"{folder} is missing: expected {folder}/<class>/<image> beside {folder.parent}/train "
                        "(ImageFolder layout)")
    found, files, targets = list_image_folder(folder)
    if found != classes:
        raise UserError(f"{folder} has class folders {found[:3]}... but expected the {len(classes)} classes of "
                        f"{folder.parent}/train; make train/ and test/ hold the same class folders")
    if decode:
        return Split(targets=targets, images=decode_cached(files, channels, cache_dir))
    return Split(targets=targets, files=files)


def image_folder_dataset(name: str, folder: Path, decode: bool, channels: int, cache_dir: Path,
                         stats) -> ImageDataset:
    classes, _, _ = list_image_folder(folder / "train")
    train = image_folder_split(folder / "train", classes, decode, channels, cache_dir)
    test = image_folder_split(folder / "test", classes, decode, channels, cache_dir)
    return ImageDataset(name=name, classes=classes, train=train, test=test, mean=stats[0], std=stats[1])


# ---------------------------------------------------------------- native formats through torchvision

def _torchvision_arrays(dataset_cls, root: Path, **kwargs) -> dict:
    """{"train": Split, "test": Split, "classes": [...]} from a torchvision dataset class."""
    splits = {}
    for split_name, split_kwargs in (("train", kwargs["train"]), ("test", kwargs["test"])):
        try:
            ds = dataset_cls(str(root), download=False, **split_kwargs)
        except RuntimeError as err:
            raise UserError(f"cannot read {dataset_cls.__name__} under {root}: {err}; "
                            "move the folder aside and pass --download, or fix the folder") from None
        images = np.asarray(ds.data)
        if images.ndim == 4 and images.shape[1] in (1, 3):
            images = images.transpose(0, 2, 3, 1)
        if images.ndim == 3:
            images = images[..., None]
        targets = np.asarray(ds.targets if hasattr(ds, "targets") else ds.labels, dtype=np.int64)
        splits[split_name] = Split(targets=targets, images=np.ascontiguousarray(images))
        splits["classes"] = list(getattr(ds, "classes", [str(i) for i in range(int(targets.max()) + 1)]))
    return splits


def _require(folder: Path, dataset: str, layouts: str) -> None:
    if not folder.is_dir():
        fetch = ", or pass --download to fetch the native format" if dataset_spec(dataset).native_layout else ""
        raise UserError(f"dataset {dataset} not found: expected {folder} holding {layouts}; fix --data-root{fetch}")


def has_native_files(dataset: str, folder: Path) -> bool:
    """torchvision's native format is in `folder` (its last file to be fetched is); the loaders read it then, else
    ImageFolder trees."""
    return (folder / dataset_spec(dataset).native_marker).exists()


def _native_or_trees(name: str, torchvision_class: str, root: Path, cache_dir: Path, channels: int, stats,
                     layouts: str) -> ImageDataset:
    """`name` read in torchvision's native format when it is there, else from ImageFolder trees."""
    import torchvision

    folder = root / name
    if has_native_files(name, folder):
        s = _torchvision_arrays(getattr(torchvision.datasets, torchvision_class), folder, train={"train": True},
                                test={"train": False})
        return ImageDataset(name, s["classes"], s["train"], s["test"], *stats)
    _require(folder / "train", name, layouts)
    return image_folder_dataset(name, folder, True, channels, cache_dir, stats)


def load_cifar10(root: Path, cache_dir: Path) -> ImageDataset:
    return _native_or_trees("cifar10", "CIFAR10", root, cache_dir, 3, CIFAR10_STATS,
                            "cifar-10-batches-py/ or train/ and test/ ImageFolder trees")


def _cifar100_superclasses_native(folder: Path, fine_targets: np.ndarray) -> tuple[np.ndarray, list[str]]:
    base = folder / "cifar-100-python"
    with open(base / "train", "rb") as f:
        coarse = np.asarray(pickle.load(f, encoding="latin1")["coarse_labels"], dtype=np.int64)
    with open(base / "meta", "rb") as f:
        names = pickle.load(f, encoding="latin1")["coarse_label_names"]
    superclass_of_class = np.zeros(100, dtype=np.int64)
    superclass_of_class[fine_targets] = coarse
    return superclass_of_class, list(names)


def _cifar100_superclasses_json(folder: Path, classes: list[str]) -> tuple[np.ndarray, list[str]]:
    mapping_file = folder / "coarse_labels.json"
    if not mapping_file.exists():
        raise UserError(f"{mapping_file} is missing: CIFAR-100 superclasses need it next to train/ and test/")
    mapping = json.loads(mapping_file.read_text())
    names = sorted(set(mapping.values()))
    return np.asarray([names.index(mapping[c]) for c in classes], dtype=np.int64), names


def load_cifar100(root: Path, cache_dir: Path, labels: str = "fine") -> ImageDataset:
    import torchvision

    folder = root / "cifar100"
    if has_native_files("cifar100", folder):
        s = _torchvision_arrays(torchvision.datasets.CIFAR100, folder, train={"train": True},
                                test={"train": False})
        dataset = ImageDataset("cifar100", s["classes"], s["train"], s["test"], *CIFAR100_STATS)
        superclass_of_class, names = _cifar100_superclasses_native(folder, dataset.train.targets)
    else:
        _require(folder / "train", "cifar100", "cifar-100-python/ or train/ and test/ ImageFolder trees")
        dataset = image_folder_dataset("cifar100", folder, True, 3, cache_dir, CIFAR100_STATS)
        superclass_of_class, names = _cifar100_superclasses_json(folder, dataset.classes)
    dataset.superclass_of_class, dataset.superclasses = superclass_of_class, names
    if labels == "coarse":
        for split in (dataset.train, dataset.test):
            split.targets = superclass_of_class[split.targets]
        dataset.classes, dataset.superclass_of_class = names, None
    return dataset


def _svhn_split(path: Path) -> Split:
    """An official .mat file read as torchvision's SVHN reads it (X: 32 x 32 x 3 x N uint8; y: 1-10, 10 for the
    digit 0), without its md5 check, so that test fixtures in the official format load."""
    from scipy.io import loadmat

    stored = loadmat(path)
    targets = stored["y"].astype(np.int64).reshape(-1)
    targets[targets == 10] = 0
    return Split(targets=targets, images=np.ascontiguousarray(stored["X"].transpose(3, 0, 1, 2)))


def load_svhn(root: Path, cache_dir: Path) -> ImageDataset:
    folder = root / "svhn"
    stats = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
    if has_native_files("svhn", folder):
        return ImageDataset("svhn", [str(i) for i in range(10)], _svhn_split(folder / "train_32x32.mat"),
                            _svhn_split(folder / "test_32x32.mat"), *stats)
    _require(folder / "train", "svhn", "train_32x32.mat and test_32x32.mat, or train/ and test/ trees")
    return image_folder_dataset("svhn", folder, True, 3, cache_dir, stats)


def load_fashion_mnist(root: Path, cache_dir: Path) -> ImageDataset:
    return _native_or_trees("fashion_mnist", "FashionMNIST", root, cache_dir, 1, ((0.2860,), (0.3530,)),
                            "FashionMNIST/raw/ (idx files) or train/ and test/ trees")


def _caltech(name: str, folder: Path, category_dir: str, excluded: set[str]) -> ImageDataset:
    if (folder / "train").is_dir():
        return image_folder_dataset(name, folder, False, 3, Path("."), IMAGENET_STATS)
    _require(folder / category_dir, name, f"{category_dir}/<class>/*.jpg (torchvision layout) or train/ and test/")
    classes, files, targets = list_image_folder(folder / category_dir)
    keep_classes = [c for c in classes if c not in excluded]
    relabel = np.asarray([keep_classes.index(c) if c in keep_classes else -1 for c in classes])
    keep = relabel[targets] >= 0
    split = Split(targets=relabel[targets][keep], files=[f for f, k in zip(files, keep) if k])
    return ImageDataset(name, keep_classes, split, None, *IMAGENET_STATS)


def load_caltech101(root: Path, cache_dir: Path) -> ImageDataset:
    return _caltech("caltech101", root / "caltech101", "101_ObjectCategories", {"BACKGROUND_Google"})


def load_caltech256(root: Path, cache_dir: Path) -> ImageDataset:
    return _caltech("caltech256", root / "caltech256", "256_ObjectCategories", {"257.clutter"})


def load_imagenet(root: Path, cache_dir: Path) -> ImageDataset:
    folder = root / "imagenet"
    _require(folder / "train", "imagenet", "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageFolder)")
    classes, files, targets = list_image_folder(folder / "train")
    test = image_folder_split(folder / "val", classes, False, 3, cache_dir)
    return ImageDataset("imagenet", classes, Split(targets=targets, files=files), test, *IMAGENET_STATS)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is before it is read (for `plan`, `describe` and parameter counts) and how to load it."""

    name: str
    loader: Callable[..., ImageDataset]      # loader(root, cache_dir, **options)
    classes: int
    train_size: int                          # training images as loaded (Caltech: every image of the kept
    #                                          classes, before the per-seed test split)
    test_size: int | None                    # the official test set; None: data.test_size images of the
    #                                          training ones, per seed (seeded_test_split)
    channels: int = 3
    image_size: tuple[int, int] | None = None      # stored (H, W) where all images share one
    small_images: bool = False               # 32x32 / 28x28 kept in memory and fed to networks as stored
    coarse_classes: int | None = None        # the classes under data.labels=coarse (CIFAR-100's superclasses)
    native_layout: str = ""                  # what torchvision's own download puts in the dataset's folder
    native_marker: str = ""                  # the last file that download fetches: its presence means complete

    def classes_for(self, labels: str) -> int:
        """The classes a task model predicts under data.labels."""
        return self.coarse_classes if labels == "coarse" and self.coarse_classes else self.classes

    def split_sizes(self, test_size: int, train: int | None = None) -> tuple[int, int]:
        """(training, test) images a job sees of `train` loaded ones (default: all): the official test set, or
        data.test_size taken out of the training images."""
        train = self.train_size if train is None else train
        return (train, self.test_size) if self.test_size else (train - test_size, test_size)


def _small(name: str, loader, classes: int, train: int, test: int, side: int = 32, channels: int = 3,
           **facts) -> DatasetSpec:
    return DatasetSpec(name, loader, classes, train, test, channels, (side, side), small_images=True, **facts)


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    _small("cifar10", load_cifar10, 10, 50000, 10000, native_marker="cifar-10-batches-py",
           native_layout="cifar-10-batches-py/ (cifar-10-python.tar.gz extracted)"),
    _small("cifar100", load_cifar100, 100, 50000, 10000, coarse_classes=20, native_marker="cifar-100-python",
           native_layout="cifar-100-python/ (cifar-100-python.tar.gz extracted)"),
    _small("svhn", load_svhn, 10, 73257, 26032, native_marker="test_32x32.mat",
           native_layout="train_32x32.mat and test_32x32.mat"),
    _small("fashion_mnist", load_fashion_mnist, 10, 60000, 10000, side=28, channels=1,
           native_marker="FashionMNIST/raw/t10k-labels-idx1-ubyte",
           native_layout="FashionMNIST/raw/ with the four *-ubyte files (the .gz files extracted)"),
    DatasetSpec("caltech101", load_caltech101, 101, 8677, None),        # BACKGROUND_Google dropped
    DatasetSpec("caltech256", load_caltech256, 256, 29780, None),       # 30,607 less 257.clutter's 827
    DatasetSpec("imagenet", load_imagenet, 1000, 1281167, 50000),
)}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def register_dataset(spec: DatasetSpec) -> None:
    """A dataset that a package adds (segmentation)."""
    DATASETS[spec.name] = spec


# ---------------------------------------------------------------- options applied after loading

def seeded_test_split(dataset: ImageDataset, seed: int, test_size: int) -> ImageDataset:
    """Datasets without an official split (Caltech) get a fixed random test set per seed."""
    if test_size <= 0 or test_size >= len(dataset.train):
        raise UserError(f"data.test_size={test_size} must be between 1 and {len(dataset.train) - 1} for "
                        f"{dataset.name}; set it with --set data.test_size=N")
    order = numpy_rng("test-split", dataset.name, seed).permutation(len(dataset.train))
    return replace(dataset, train=dataset.train.take(np.sort(order[test_size:])),
                   test=dataset.train.take(np.sort(order[:test_size])))


def imbalanced(dataset: ImageDataset, ratio: float) -> ImageDataset:
    """Every odd class keeps 1/ratio of its training images (TA-VAAL supplement Fig. 6: x10 and x100)."""
    targets = dataset.train.targets
    keep = np.ones(len(targets), dtype=bool)
    for label in range(1, dataset.num_classes, 2):
        members = np.flatnonzero(targets == label)
        keep[members[int(round(len(members) / ratio)):]] = False
    return replace(dataset, name=f"{dataset.name}_imb{ratio:g}", train=dataset.train.take(np.flatnonzero(keep)))


def subsample(split: Split, size: int, tag: str) -> Split:
    """A fixed random subset shared by every seed and method (profiles with fewer images)."""
    if size <= 0 or size >= len(split):
        return split
    return split.take(np.sort(numpy_rng("subsample", tag).permutation(len(split))[:size]))


def load_dataset(name: str, root: Path, cache_dir: Path | None = None, **options) -> ImageDataset:
    return dataset_spec(name).loader(root, cache_dir or default_cache_dir(), **options)
