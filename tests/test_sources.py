import numpy as np
import torch
import torch.nn.functional as F

from core.lib.datasets import Split
from core.lib.sources import Augmentation, TensorSource, random_crop_flip


def test_batched_crop_flip_equals_per_image_crop_flip():
    images = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, 2, True, generator)
    replay = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 5, (2, 6), generator=replay)
    flips = torch.rand(6, generator=replay) < 0.5
    for i in range(6):
        expected = F.pad(images[i], (2, 2, 2, 2))[:, offsets[0, i]:offsets[0, i] + 8, offsets[1, i]:offsets[1, i] + 8]
        if flips[i]:
            expected = expected.flip(2)
        assert torch.equal(out[i], expected)


def _source(count=10, hflip=False):
    images = np.arange(count, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2).repeat(3, 3)
    split = Split(targets=np.arange(count), images=images)
    return TensorSource(split, (0.0, 0.0, 0.0), (1 / 255,) * 3, Augmentation(hflip=hflip), "cpu")


def test_batches_visit_each_index_once_and_normalise():
    source = _source()
    generator = torch.Generator().manual_seed(1)
    seen = []
    for images, chosen in source.batches(np.arange(2, 9), 3, shuffle=generator):
        assert torch.equal(images[:, 0, 0, 0], chosen.float())       # (value - 0) / (1/255) / 255
        seen += chosen.tolist()
    assert sorted(seen) == list(range(2, 9)) and seen != list(range(2, 9))


def test_drop_last_drops_the_partial_batch_but_never_the_only_one():
    source = _source()
    assert [len(c) for _, c in source.batches(np.arange(10), 4, drop_last=True)] == [4, 4]
    assert [len(c) for _, c in source.batches(np.arange(3), 4, drop_last=True)] == [3]


def test_one_channel_batches_keep_a_convolution_in_nchw():
    """A permuted (N, H, W, 1) array is contiguous with NHWC strides; a convolution would then run and return
    channels-last, whose oneDNN CPU backward corrupted the heap on Fashion-MNIST."""
    images = np.random.default_rng(0).integers(0, 255, (8, 6, 6, 1), dtype=np.uint8)
    source = TensorSource(Split(targets=np.arange(8), images=images), (0.5,), (0.25,),
                          Augmentation(hflip=True, crop_padding=2), "cpu")
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    for augment in (False, True):
        for batch, _ in source.batches(np.arange(8), 4, augment, torch.Generator().manual_seed(0)):
            assert batch.stride() == (36, 36, 6, 1)
            assert conv(batch).is_contiguous()
