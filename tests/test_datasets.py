import pickle

import numpy as np
import pytest
import torchvision

from core.lib import datasets
from core.lib.datasets import (DATASETS, dataset_spec, decode_cached, default_cache_dir, imbalanced, load_dataset,
                               resolve_data_root, seeded_test_split)
from core.lib.errors import UserError
from tests.conftest import write_png_tree


def test_cifar10_image_folder_from_the_shared_copy(data_root):
    """Decoded once into the default cache, which the other tests then read (decode_cached's own test: below)."""
    dataset = load_dataset("cifar10", data_root)
    assert dataset.train.images.shape == (50000, 32, 32, 3) and dataset.train.images.dtype == np.uint8
    assert dataset.test.images.shape == (10000, 32, 32, 3)
    assert dataset.classes[:3] == ["airplane", "automobile", "bird"]
    assert np.bincount(dataset.train.targets).tolist() == [5000] * 10
    assert len(list(default_cache_dir().glob("decoded-*.npy"))) >= 2
    assert described(dataset) and dataset_spec("cifar10").split_sizes(0) == (50000, 10000)


def described(dataset, labels: str = "fine") -> bool:
    """What plan and describe read without the data is what the loader gives (sizes: in each test, as the shared
    copies of CIFAR-100 and Fashion-MNIST are partial)."""
    spec = dataset_spec(dataset.name)
    shape = dataset.train.images.shape[1:3] if dataset.in_memory else None
    return (spec.classes_for(labels), spec.channels, spec.small_images, spec.image_size if spec.small_images else None
            ) == (dataset.num_classes, dataset.channels, dataset.in_memory, shape)


def test_an_unknown_dataset_names_the_known_ones():
    with pytest.raises(UserError, match="unknown dataset 'cifar11'; known: ") as raised:
        load_dataset("cifar11", ".")
    known = str(raised.value).partition("known: ")[2].split(", ")     # segmentation's join once it is imported
    assert known == sorted(known) and {"caltech101", "caltech256", "cifar10", "imagenet"} <= set(known)
    assert dataset_spec("cifar100").classes_for("coarse") == 20 and dataset_spec("cifar10").classes_for("coarse") == 10
    assert [spec.name for spec in DATASETS.values() if spec.native_marker] == [
        "cifar10", "cifar100", "svhn", "fashion_mnist"]


def test_decoded_images_are_cached_by_their_file_list(tmp_path):
    write_png_tree(tmp_path / "tree", ["a", "b"], 3)
    files = sorted(str(path) for path in (tmp_path / "tree").rglob("*.png"))
    first = decode_cached(files, 3, tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("decoded-*.npy"))
    assert first.shape == (6, 8, 8, 3) and first.dtype == np.uint8 and len(cached) == 1
    assert np.array_equal(decode_cached(files, 3, tmp_path / "cache"), first)
    assert list((tmp_path / "cache").glob("decoded-*.npy")) == cached
    decode_cached(files[:4], 3, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("decoded-*.npy"))) == 2


def test_cifar100_fine_and_coarse_labels(data_root):
    fine = load_dataset("cifar100", data_root)
    coarse = load_dataset("cifar100", data_root, labels="coarse")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert described(fine) and described(coarse, "coarse")
    assert np.array_equal(coarse.train.targets, fine.superclass_of_class[fine.train.targets])


def test_fashion_mnist_native_idx_format(data_root):
    dataset = load_dataset("fashion_mnist", data_root)
    assert dataset.train.images.shape[1:] == (28, 28, 1) and len(dataset.train) == 8226
    assert len(dataset.test) == 4443 and dataset.num_classes == 10
    assert described(dataset)


def test_caltech101_is_rgb_files_without_background_and_split_per_seed(data_root):
    dataset = load_dataset("caltech101", data_root)
    assert dataset.num_classes == 101 and "BACKGROUND_Google" not in dataset.classes
    assert dataset.test is None and dataset.train.files and len(dataset.train) == 8677
    first, again, other = (seeded_test_split(dataset, s, 1000) for s in (0, 0, 1))
    assert len(first.test) == 1000 and len(first.train) == 7677
    assert described(dataset) and dataset_spec("caltech101").split_sizes(1000) == (len(first.train), len(first.test))
    assert first.test.files == again.test.files and first.test.files != other.test.files
    assert not set(first.test.files) & set(first.train.files)


def test_caltech256_fixture_in_torchvision_layout_drops_clutter(tmp_path):
    write_png_tree(tmp_path / "caltech256" / "256_ObjectCategories", ["001.ak47", "002.bat", "257.clutter"], 3)
    dataset = load_dataset("caltech256", tmp_path)
    assert dataset.classes == ["001.ak47", "002.bat"] and len(dataset.train) == 6


def test_imagenet_fixture_train_and_val_trees(tmp_path):
    for split in ("train", "val"):
        write_png_tree(tmp_path / "imagenet" / split, ["n01", "n02"], 2)
    dataset = load_dataset("imagenet", tmp_path)
    assert len(dataset.train) == 4 and len(dataset.test) == 4 and dataset.train.images is None


def _write_cifar10_batches(folder, rng):
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)


def test_cifar10_native_pickles_are_preferred(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)   # fixture md5s
    _write_cifar10_batches(tmp_path / "cifar10" / "cifar-10-batches-py", np.random.default_rng(0))
    dataset = load_dataset("cifar10", tmp_path)
    assert dataset.train.images.shape == (20, 32, 32, 3) and len(dataset.test) == 4
    assert dataset.classes[0] == "class0"


def test_svhn_native_mat_files(tmp_path, monkeypatch):
    import scipy.io

    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)   # fixture md5s
    folder = tmp_path / "svhn"
    folder.mkdir()
    for split, count in (("train", 6), ("test", 3)):
        images = np.random.default_rng(0).integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        labels = np.array([[10], [1], [2], [3], [4], [5]][:count], dtype=np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
    dataset = load_dataset("svhn", tmp_path)
    assert dataset.train.images.shape == (6, 32, 32, 3) and dataset.train.targets[0] == 0


def test_image_folder_class_mismatch_is_a_user_error(tmp_path):
    write_png_tree(tmp_path / "cifar10" / "train", ["a", "b"], 1, size=(32, 32))
    write_png_tree(tmp_path / "cifar10" / "test", ["a", "c"], 1, size=(32, 32))
    with pytest.raises(UserError, match="class folders"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_imbalanced_keeps_one_in_ratio_of_every_odd_class(data_root):
    dataset = imbalanced(load_dataset("cifar10", data_root), 100)
    assert np.bincount(dataset.train.targets).tolist() == [5000, 50] * 5


@pytest.mark.parametrize("name", ["cifar10", "svhn", "caltech256", "imagenet"])
def test_missing_dataset_is_a_one_line_error(tmp_path, name):
    with pytest.raises(UserError, match="not found") as err:
        load_dataset(name, tmp_path)
    assert "\n" not in str(err.value)


def test_missing_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("AL_DATA_ROOT", raising=False)
    monkeypatch.setattr(datasets, "DEFAULT_DATA_ROOT", tmp_path / "data")
    with pytest.raises(UserError, match="--data-root"):
        resolve_data_root(None)
    with pytest.raises(UserError, match="not a folder"):
        resolve_data_root(str(tmp_path / "missing"))


def test_cifar100_native_pickles_give_fine_and_coarse_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)   # fixture md5s
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = np.arange(100)
    for name in ("train", "test"):
        batch = {"data": np.zeros((100, 3072), dtype=np.uint8), "fine_labels": fine.tolist(),
                 "coarse_labels": (fine // 5).tolist()}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)],
                     "coarse_label_names": [f"c{i}" for i in range(20)]}, handle)
    dataset = load_dataset("cifar100", tmp_path)
    assert dataset.superclass_of_class.tolist() == (fine // 5).tolist() and dataset.superclasses[3] == "c3"
    coarse = load_dataset("cifar100", tmp_path, labels="coarse")
    assert coarse.num_classes == 20 and coarse.train.targets.tolist() == (fine // 5).tolist()
