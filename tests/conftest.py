import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "datasets"
NO_DATA = "no data root with cifar10/train"


def shared_data_root() -> Path | None:
    """$AL_DATA_ROOT where it is set, else ../shared/datasets, when it holds CIFAR-10's ImageFolder trees."""
    candidate = Path(os.environ.get("AL_DATA_ROOT") or SHARED_DATA)
    return candidate if (candidate / "cifar10" / "train").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip(NO_DATA)
    return root


def pytest_terminal_summary(terminalreporter):
    """A clone without the data skips every test that reads it: say how many, and where the data goes."""
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if NO_DATA in str(report.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped for lack of data: set AL_DATA_ROOT to a folder holding cifar10/train "
            f"and cifar10/test as ImageFolder trees (and cifar100/, fashion_mnist/, caltech101/, camvid/ beside it; "
            f"docs/data.md), or put that folder at {SHARED_DATA}")


def assert_cli_refuses_in_one_line(capsys, args: list[str], message: str) -> None:
    """core.tools.cli.main refuses `args` with exit 2 and one line `error: ...` holding `message`."""
    from core.tools.cli import main

    try:
        code = main(args)
    except SystemExit as exited:              # argparse's mistakes leave through OneLineParser.error
        code = exited.code
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and len(error.strip().splitlines()) == 1, error


def write_png_tree(folder: Path, classes: list[str], per_class: int, size=(8, 8), seed: int = 0) -> None:
    """A tiny ImageFolder tree of random PNG images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index:04d}.png")


def _save_pair(image_path: Path, mask_path: Path, mask: np.ndarray, rng) -> None:
    from PIL import Image

    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)).save(image_path)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(mask_path)


def write_cityscapes_tree(root: Path, counts=None, size=(16, 24), mask_values=(0, 7, 8, 26, 33), seed: int = 0):
    """Cityscapes' official layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine ..._gtFine_labelIds.png,
    the masks cycling through `mask_values` (label ids)."""
    rng = np.random.default_rng(seed)
    values = np.resize(np.asarray(mask_values), size[0] * size[1]).reshape(size)
    for split, count in (counts or {"train": 40, "val": 10}).items():
        for index in range(count):
            city = ("aachen", "bremen")[index % 2]
            stem = f"{city}_{index:06d}_000019"
            _save_pair(root / "cityscapes" / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                       root / "cityscapes" / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", values, rng)
    return root


def write_bdd100k_tree(root: Path, counts=None, size=(16, 24), mask_values=(0, 5, 18, 255), seed: int = 0):
    """BDD100K's official layout: images/10k/<split>/*.jpg + labels/sem_seg/masks/<split>/*.png (train ids)."""
    rng = np.random.default_rng(seed)
    values = np.resize(np.asarray(mask_values), size[0] * size[1]).reshape(size)
    for split, count in (counts or {"train": 40, "val": 10}).items():
        for index in range(count):
            stem = f"{index:08x}-{split}"
            _save_pair(root / "bdd100k" / "images" / "10k" / split / f"{stem}.jpg",
                       root / "bdd100k" / "labels" / "sem_seg" / "masks" / split / f"{stem}.png", values, rng)
    return root


def write_svhn_mat(root: Path, counts=None, seed: int = 0) -> Path:
    """SVHN's official format: svhn/{train,test}_32x32.mat holding X (32, 32, 3, N) uint8 and y (N, 1) in 1-10."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    (root / "svhn").mkdir(parents=True, exist_ok=True)
    for split, count in (counts or {"train": 300, "test": 100}).items():
        savemat(root / "svhn" / f"{split}_32x32.mat",
                {"X": rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8),
                 "y": (np.arange(count) % 10 + 1).astype(np.uint8)[:, None]})
    return root
