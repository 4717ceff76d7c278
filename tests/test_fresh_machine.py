"""A fresh clone: no data root configured, `demo` fetches CIFAR-10 into data/ (here from a local file through the
project's downloader, never the network), and offline it says in one line what to place where."""
import hashlib
import pickle
import tarfile

import numpy as np
import pytest
import torchvision

from core.lib import datasets
from core.lib.datasets import load_dataset, resolve_data_root
from core.lib.errors import UserError
from core.tools import cli, downloads
from core.tools.commands import demo
from core.tools.downloads import fetch_if_missing
from tests.conftest import write_png_tree


def fake_cifar10_archive(folder, train_per_batch: int = 40, test: int = 50):
    """cifar-10-python.tar.gz in torchvision's layout, with random images; returns (path, md5)."""
    rng = np.random.default_rng(0)
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in names:
        count = test if name == "test_batch" else train_per_batch
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": (np.arange(count) % 10).tolist()}
        (batches / name).write_bytes(pickle.dumps(batch))
    (batches / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{c}" for c in range(10)]}))
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """No AL_DATA_ROOT, no data/ yet; torchvision is told the fake batches' checksums are right."""
    monkeypatch.delenv("AL_DATA_ROOT", raising=False)
    monkeypatch.setattr(datasets, "DEFAULT_DATA_ROOT", tmp_path / "clone" / "data")
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    return tmp_path


def serve(monkeypatch, url: str, md5: str, name: str = "cifar-10-python.tar.gz"):
    monkeypatch.setattr(downloads, "native_files", lambda dataset: [(url, name, md5)])


def test_demo_on_a_fresh_clone_downloads_cifar10_into_data_and_runs(fresh_clone, monkeypatch, capsys):
    archive, md5 = fake_cifar10_archive(fresh_clone / "mirror")
    serve(monkeypatch, archive.as_uri(), md5)
    monkeypatch.setitem(demo.DEMO_PROFILES, "cpu", ("smoke", 1))
    monkeypatch.setitem(demo.DEMO, "methods", "random")
    out = fresh_clone / "results"
    assert cli.main(["demo", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    data = fresh_clone / "clone" / "data"
    assert (data / "cifar10" / "cifar-10-batches-py" / "test_batch").exists()
    assert (out / "baselines" / "ll4al_cifar10" / "random" / "seed0" / "results.jsonl").read_text().count("\n") == 3
    assert "downloading" in capsys.readouterr().out


def test_run_without_download_on_a_fresh_clone_says_how_to_get_data(fresh_clone, capsys):
    assert cli.main(["run", "baselines", "ll4al_cifar10", "--profile", "smoke", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--data-root" in error and "--download" in error


def test_offline_download_is_one_line_saying_what_to_place_where(fresh_clone, monkeypatch):
    serve(monkeypatch, (fresh_clone / "no-such-mirror" / "cifar-10-python.tar.gz").as_uri(), "0" * 32)
    root = resolve_data_root(None, create=True)
    with pytest.raises(UserError, match="cannot download cifar10") as err:
        fetch_if_missing("cifar10", root)
    message = str(err.value)
    assert "\n" not in message and root == fresh_clone / "clone" / "data"
    assert f"offline, place cifar-10-batches-py/ (cifar-10-python.tar.gz extracted) in {root / 'cifar10'}" in message


def test_a_download_with_the_wrong_checksum_is_refused_and_removed(fresh_clone, monkeypatch):
    archive, _ = fake_cifar10_archive(fresh_clone / "mirror")
    serve(monkeypatch, archive.as_uri(), "0" * 32)
    with pytest.raises(UserError, match="md5"):
        fetch_if_missing("cifar10", fresh_clone)
    assert not (fresh_clone / "cifar10" / "cifar-10-python.tar.gz").exists()


def test_an_image_folder_copy_is_read_and_never_downloaded_over(fresh_clone, monkeypatch):
    def no_network(dataset):
        raise AssertionError("downloaded although the dataset was there")

    monkeypatch.setattr(downloads, "native_files", no_network)
    for split in ("train", "test"):
        write_png_tree(fresh_clone / "cifar10" / split, ["cat", "dog"], 3)
    fetch_if_missing("cifar10", fresh_clone)
    dataset = load_dataset("cifar10", fresh_clone, cache_dir=fresh_clone / "cache")
    assert dataset.train.images.shape == (6, 8, 8, 3)
