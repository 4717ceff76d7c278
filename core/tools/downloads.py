"""`--download`: fetch a small-image dataset in torchvision's native format into the data root, checking each
file's md5, before a command reads it (core.lib.datasets reads what is there and never downloads)."""
from __future__ import annotations

import os
from pathlib import Path

from core.lib.datasets import DATASETS, dataset_spec, has_native_files
from core.lib.errors import UserError


def fetch_if_missing(dataset: str, root: Path) -> None:
    """Fetch `dataset` into root/<dataset> unless its native files or ImageFolder trees are there; datasets
    without a native download (Caltech, ImageNet, segmentation) are left to their loaders' messages."""
    folder = Path(root) / dataset
    native = dataset in DATASETS and dataset_spec(dataset).native_marker
    if native and not has_native_files(dataset, folder) and not (folder / "train").is_dir():
        fetch_native(dataset, folder)


def native_files(dataset: str) -> list[tuple[str, str, str]]:
    """(url, path inside the dataset's folder, md5) of each file torchvision's download fetches."""
    import torchvision.datasets as tv

    if dataset in ("cifar10", "cifar100"):
        cls = tv.CIFAR10 if dataset == "cifar10" else tv.CIFAR100
        return [(cls.url, cls.filename, cls.tgz_md5)]
    if dataset == "svhn":
        return [(url, name, md5) for url, name, md5 in (tv.SVHN.split_list[s] for s in ("train", "test"))]
    return [(tv.FashionMNIST.mirrors[0] + name, f"FashionMNIST/raw/{name}", md5)
            for name, md5 in tv.FashionMNIST.resources]


def download_file(url: str, destination: Path) -> None:
    """One dataset file from `url` (file:// URLs work too, which the tests use)."""
    import shutil
    import urllib.request

    partial = destination.with_name(destination.name + ".partial")
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
        shutil.copyfileobj(response, out)
    os.replace(partial, destination)


def fetch_native(dataset: str, folder: Path) -> None:
    """Download and extract `dataset` into `folder` in torchvision's layout, checking each file's md5."""
    from urllib.error import URLError

    from torchvision.datasets.utils import check_integrity, extract_archive

    layout = dataset_spec(dataset).native_layout
    offline = (f"offline, place {layout} in {folder} (or ImageFolder trees {folder}/train/ and {folder}/test/), or "
               f"point --data-root at a folder holding {dataset}/")
    for url, name, md5 in native_files(dataset):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not check_integrity(str(target), md5):
            print(f"downloading {url} -> {target}", flush=True)
            try:
                download_file(url, target)
            except (URLError, OSError) as err:
                raise UserError(f"cannot download {dataset} from {url} ({getattr(err, 'reason', err)}); "
                                f"{offline}") from None
            if not check_integrity(str(target), md5):
                target.unlink()
                raise UserError(f"{url} gave a file whose md5 is not {md5} (removed); try again, or {offline}")
        if name.endswith((".tar.gz", ".gz")):
            extract_archive(str(target), str(target.parent))
