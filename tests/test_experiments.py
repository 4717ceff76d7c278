"""Every registered experiment's protocol runs end to end in the smoke profile: on the shared data where it
exists, on tiny fixtures in the official layout where it does not (Caltech-256, ImageNet, Cityscapes, BDD100K). Every method is run
end to end in tests/test_baselines.py."""
import numpy as np
import pytest
import torch

from core.experiments import EXPERIMENTS, method_status, papers
from core.loop import RunSettings, run_job
from core.report import write_report
from tests.conftest import write_bdd100k_tree, write_cityscapes_tree, write_png_tree

papers()
FIXTURE_DATASETS = {"caltech256", "imagenet", "cityscapes", "bdd100k", "svhn"}
OWN_METHODS = {"vaal": {"vaal"}, "lada": {"lada", "lada_fixed_ll4almix"}}   # every lada method: test_baselines


def write_svhn_mat(folder, counts=(("train", 200), ("test", 50))):
    """SVHN's official train_32x32.mat / test_32x32.mat layout: X (32, 32, 3, N), y (N, 1) with 10 for digit 0."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in counts:
        labels = (np.arange(count) % 10 + 1).astype(np.uint8)[:, None]
        scipy.io.savemat(folder / f"{split}_32x32.mat",
                         {"X": rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8), "y": labels})


def fixture_root(dataset: str, folder):
    if dataset == "svhn":
        write_svhn_mat(folder / "svhn")
        return folder
    if dataset == "cityscapes":
        return write_cityscapes_tree(folder)
    if dataset == "bdd100k":
        return write_bdd100k_tree(folder)
    if dataset == "caltech256":
        write_png_tree(folder / "caltech256" / "256_ObjectCategories", ["001.a", "002.b", "003.c"], 50, (40, 40))
    else:
        write_png_tree(folder / "imagenet" / "train", ["n01", "n02", "n03"], 50, (40, 40))
        write_png_tree(folder / "imagenet" / "val", ["n01", "n02", "n03"], 10, (40, 40))
    return folder


@pytest.mark.parametrize("key", sorted(EXPERIMENTS), ids="/".join)
def test_every_experiment_runs_in_the_smoke_profile(key, tmp_path, request, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)   # fixture md5s
    config = EXPERIMENTS[key].config("smoke", {"seeds": 1})
    if config.data.dataset in FIXTURE_DATASETS:
        root = fixture_root(config.data.dataset, tmp_path / "data")
    else:
        root = request.getfixturevalue("data_root")
    settings = RunSettings(root, tmp_path / "out", torch.device("cpu"), "smoke", progress=False)
    implemented, _ = method_status(config)
    own = OWN_METHODS.get(config.paper, set())
    for method in sorted(({"random", "entropy"} | own) & set(implemented)):
        rows = run_job(config, method, 0, settings)
        assert len(rows) == config.protocol.cycles
        assert np.diff([r["n_labeled"] for r in rows]).min() > 0
    assert any(p.suffix == ".png" for p in write_report(tmp_path / "out"))
