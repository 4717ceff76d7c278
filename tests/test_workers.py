"""Rows do not depend on `data.workers` (issue 28 item 6): files read by DataLoader workers are augmented from a
generator seeded by the pass's key and the sample's index, and segmentation crops are drawn in the training
process, so 0, 1 or 2 workers give the same batches and the same rows."""
import numpy as np
import pytest
import torch

import segmentation  # noqa: F401  (registers the segmentation experiments)
from core.lib.datasets import Split, list_image_folder
from core.lib.sources import Augmentation, FileSource
from segmentation.data import load_cityscapes
from tests.conftest import write_cityscapes_tree, write_png_tree
from tests.golden import golden_row

WORKERS = (0, 1, 2)


def _file_source(tmp_path, workers: int) -> FileSource:
    if not (tmp_path / "tree").is_dir():
        write_png_tree(tmp_path / "tree", ["a", "b"], 4, size=(10, 14))
    _, files, targets = list_image_folder(tmp_path / "tree")
    return FileSource(Split(targets=targets, files=files), (0.0,) * 3, (1.0,) * 3,
                      Augmentation(hflip=True, image_size=6, resize=8), "cpu", workers)


def _passes(source, batch_size: int, passes: int = 2) -> list[dict[int, torch.Tensor]]:
    """Each pass's augmented image of every sample, by dataset index, from one shuffling generator."""
    shuffle = torch.Generator().manual_seed(0)
    found = []
    for _ in range(passes):
        batches = source.batches(np.arange(8), batch_size, augment=True, shuffle=shuffle)
        found.append({int(i): image for images, chosen in batches for image, i in zip(images, chosen)})
    return found


def test_a_sample_is_augmented_alike_by_any_worker_and_otherwise_in_each_pass(tmp_path):
    """Other worker counts and batch sizes send a sample to another worker, or to the main process."""
    reference = _passes(_file_source(tmp_path, 0), batch_size=4)
    for workers, batch_size in ((1, 3), (2, 1)):
        passes = _passes(_file_source(tmp_path, workers), batch_size)
        assert all(torch.equal(passes[p][i], reference[p][i]) for p in range(2) for i in range(8)), \
            f"{workers} workers, batches of {batch_size}"
    first, second = reference
    assert sum(not torch.equal(first[i], second[i]) for i in range(8)) >= 6


def test_segmentation_files_give_the_same_crops_for_any_worker_count(tmp_path):
    root = write_cityscapes_tree(tmp_path, {"train": 6, "val": 1})
    dataset = load_cityscapes(root, tmp_path / "cache", in_memory=False)
    batches = []
    for workers in WORKERS:
        source = dataset.make_source(dataset.train, Augmentation(hflip=True, image_size=8, resize=0), "cpu", workers)
        shuffle = torch.Generator().manual_seed(0)
        batches.append(list(source.labeled_batches(np.arange(6), None, 4, augment=True, shuffle=shuffle)))
    for other in batches[1:]:
        assert all(torch.equal(a, b) for pair, others in zip(batches[0], other) for a, b in zip(pair, others))


def _smoke_rows(paper: str, experiment: str, method: str, workers: int, data_root, out) -> list[dict]:
    from core.lib.experiments import get_experiment
    from core.lib.loop import RunSettings
    from core.tools.jobs import run_job

    config = get_experiment(paper, experiment).config("smoke", {"seeds": 1, "protocol.cycles": 2,
                                                                "data.workers": workers})
    rows = run_job(config, method, 0, RunSettings(data_root, out, torch.device("cpu"), "smoke", progress=False))
    # the run hash still holds data.workers, although it no longer changes results
    return [{k: v for k, v in golden_row(row).items() if k != "config_hash"} for row in rows]


@pytest.mark.slow        # three smoke runs of about 7 CPU-seconds each
@pytest.mark.parametrize("paper, experiment, method", [("ta_vaal", "supp_fig6c_caltech101", "vaal"),
                                                       ("segmentation", "camvid", "entropy")])
def test_smoke_rows_are_the_same_for_0_1_and_2_workers(paper, experiment, method, data_root, tmp_path):
    rows = [_smoke_rows(paper, experiment, method, workers, data_root, tmp_path / str(workers)) for workers in WORKERS]
    assert rows[0][0]["selected"] and rows[1] == rows[0] and rows[2] == rows[0]
