import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_root() -> Path | None:
    for candidate in (os.environ.get("AL_DATA_ROOT"), REPO.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / "cifar10" / "train").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("the shared datasets are not here; set AL_DATA_ROOT to a folder holding cifar10/")
    return root


def write_png_tree(folder: Path, classes: list[str], per_class: int, size=(8, 8), seed: int = 0) -> None:
    """A tiny ImageFolder tree of random PNG images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index:04d}.png")
