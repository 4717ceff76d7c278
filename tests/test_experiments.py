"""Every registered experiment's protocol runs end to end in the smoke profile: on the shared data where it
exists, on tiny fixtures in the official layout where it does not (Caltech-256, ImageNet, Cityscapes, BDD100K,
SVHN). Every method is run end to end in tests/test_baselines.py."""
import numpy as np
import pytest
import torch

from core.experiments import EXPERIMENTS, method_status, papers
from core.loop import RunSettings, run_job
from core.report import write_report
from tests.conftest import write_bdd100k_tree, write_cityscapes_tree, write_png_tree, write_svhn_mat

papers()
FIXTURE_DATASETS = {"caltech256", "imagenet", "cityscapes", "bdd100k", "svhn"}
OWN_METHODS = {"vaal": {"vaal"}, "ta_vaal": {"ta_vaal", "learning_loss_v2"},
               "lada": {"lada", "lada_fixed_ll4almix"},   # every lada method: test_baselines
               "daal": {"daal", "ll_rd"}}


def fixture_root(dataset: str, folder):
    if dataset == "cityscapes":
        return write_cityscapes_tree(folder)
    if dataset == "bdd100k":
        return write_bdd100k_tree(folder, size=(18, 32))     # 16:9 as BDD100K's 720 x 1280: resized to 48 x 85
    if dataset == "svhn":
        return write_svhn_mat(folder)
    if dataset == "caltech256":
        write_png_tree(folder / "caltech256" / "256_ObjectCategories", ["001.a", "002.b", "003.c"], 50, (40, 40))
    else:
        write_png_tree(folder / "imagenet" / "train", ["n01", "n02", "n03"], 50, (40, 40))
        write_png_tree(folder / "imagenet" / "val", ["n01", "n02", "n03"], 10, (40, 40))
    return folder


@pytest.mark.parametrize("key", sorted(EXPERIMENTS), ids="/".join)
def test_every_experiment_runs_in_the_smoke_profile(key, tmp_path, request):
    config = EXPERIMENTS[key].config("smoke", {"seeds": 1})
    if config.data.dataset in FIXTURE_DATASETS:
        root = fixture_root(config.data.dataset, tmp_path / "data")
    else:
        root = request.getfixturevalue("data_root")
    settings = RunSettings(root, tmp_path / "out", torch.device("cpu"), "smoke", progress=False)
    implemented, _ = method_status(config)
    for method in sorted(({"random", "entropy"} | OWN_METHODS.get(config.paper, set())) & set(implemented)):
        rows = run_job(config, method, 0, settings)
        assert len(rows) == config.protocol.cycles
        assert np.diff([r["n_labeled"] for r in rows]).min() > 0
    assert any(p.suffix == ".png" for p in write_report(tmp_path / "out"))
