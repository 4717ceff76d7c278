"""Batches of images on the training device.

`TensorSource` keeps a small-image dataset on the device as one uint8 tensor and augments whole batches there,
so the training loop does no per-sample Python work and no host copies. `FileSource` reads large images with
DataLoader workers and pinned memory. Both yield (images, dataset indices) with the indices on the device, and
(images, targets) from `labeled_batches`; segmentation sources do the same with masks as targets. With
`shard=True` (training under torchrun) each process gets its rows of every batch (core.lib.parallel.rank_rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from core.lib import parallel
from core.lib.errors import UserError
from core.lib.seeding import stream_key


@dataclass(frozen=True)
class Augmentation:
    hflip: bool = True
    crop_padding: int = 0
    image_size: int = 224
    resize: int = 256


def _batch_order(count: int, shuffle: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if shuffle is None:
        return torch.arange(count, device=device)
    return torch.randperm(count, generator=shuffle, device=shuffle.device).to(device)


def _batch_slices(count: int, batch_size: int, drop_last: bool) -> range:
    """drop_last never drops a labeled set smaller than one batch: it is then the only batch."""
    stop = count - count % batch_size if drop_last and count >= batch_size else count
    return range(0, stop, batch_size)


def batch_sizes(count: int, batch_size: int, drop_last: bool) -> list[int]:
    """The size of every batch over `count` indices, before they are shared out between processes."""
    return [min(batch_size, count - start) for start in _batch_slices(count, batch_size, drop_last)]


def index_batches(indices: np.ndarray, batch_size: int, shuffle: torch.Generator | None, drop_last: bool,
                  device: torch.device) -> Iterator[torch.Tensor]:
    """Batches of dataset indices on the device, shuffled by `shuffle` when given (in-memory sources)."""
    indices = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=device)
    order = indices[_batch_order(len(indices), shuffle, device)]
    for start in _batch_slices(len(order), batch_size, drop_last):
        yield order[start:start + batch_size]


def loader_batches(dataset: torch.utils.data.Dataset, indices: np.ndarray, batch_size: int,
                   shuffle: torch.Generator | None, drop_last: bool, device: torch.device, workers: int,
                   shard: bool = False, key: int | None = None):
    """Batches read by DataLoader workers in the order `index_batches` would give, moved to the device; the dataset
    maps (index, `key`) to items ending with the index, the key reaching any worker. Sharded: this process's rows."""
    indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    order = [(index, key) for index in indices[_batch_order(len(indices), shuffle, torch.device("cpu"))].tolist()]
    batches = [order[start:start + batch_size] for start in _batch_slices(len(order), batch_size, drop_last)]
    if shard:
        batches = [batch[parallel.rank_rows(len(batch))] for batch in batches]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    try:
        for batch in loader:
            yield tuple(part.to(device, non_blocking=True) for part in batch)
    except UserError as err:
        # a worker's error comes back with its traceback in the message: keep the one line that names the file
        raise UserError(str(err).strip().splitlines()[-1].split("UserError: ", 1)[-1]) from None


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding, fill=0) + RandomHorizontalFlip, for a whole (B, C, H, W) batch."""
    batch, channels, height, width = images.shape
    device = images.device
    if padding:
        padded = F.pad(images, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (2, batch), device=generator.device, generator=generator)
        offsets = offsets.to(device)
        rows = (offsets[0, :, None] + torch.arange(height, device=device))[:, None, :, None]
        cols = (offsets[1, :, None] + torch.arange(width, device=device))[:, None, None, :]
        images = padded[torch.arange(batch, device=device)[:, None, None, None],
                        torch.arange(channels, device=device)[None, :, None, None], rows, cols]
    if hflip:
        flip = (torch.rand(batch, device=generator.device, generator=generator) < 0.5).to(device)
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images


class LabelBatches:
    """Image-level labels: the answers are looked up by the dataset indices of each batch."""

    dense = False

    def labeled_batches(self, indices: np.ndarray, answers: torch.Tensor, batch_size: int, augment: bool = False,
                        shuffle: torch.Generator | None = None, drop_last: bool = False, shard: bool = False
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, chosen in self.batches(indices, batch_size, augment, shuffle, drop_last, shard):
            yield images, answers[chosen]


class TensorSource(LabelBatches):
    """A uint8 (N, C, H, W) tensor on the device, normalised and augmented batch-wise on the device."""

    def __init__(self, split, mean, std, augmentation: Augmentation, device: torch.device):
        self.device = torch.device(device)
        # clone, not contiguous(): a 1-channel (N, H, W, 1) array permuted is already "contiguous" with NHWC
        # strides, which convolutions take for channels-last; oneDNN's CPU backward then corrupts the heap
        images = torch.from_numpy(split.images).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
        self.images = images.to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        self.augmentation = augmentation

    def __len__(self) -> int:
        return self.images.shape[0]

    def load(self, indices: torch.Tensor, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
        images = self.images[indices]
        if augment:
            images = random_crop_flip(images, self.augmentation.crop_padding, self.augmentation.hflip, generator)
        return (images.float() - self.mean) / self.std

    def batches(self, indices: np.ndarray, batch_size: int, augment: bool = False,
                shuffle: torch.Generator | None = None, drop_last: bool = False, shard: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Sharded, every process still augments the whole batch: its random draws, and so the next batches'
        order and augmentation, stay those of the single-process run."""
        for chosen in index_batches(indices, batch_size, shuffle, drop_last, self.device):
            part = parallel.rank_rows(len(chosen)) if shard else slice(None)
            yield self.load(chosen, augment, shuffle)[part], chosen[part]


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, files: list[str], transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int | None]):
        from PIL import Image

        index, key = item
        try:
            # torchvision's transforms draw from the global RNG, which differs by worker: seed it by (pass key, index)
            with Image.open(self.files[index]) as image, torch.random.fork_rng(devices=()):
                torch.manual_seed(stream_key("augment", key, index) % 2**63)
                return self.transform(image.convert("RGB")), index
        except (OSError, SyntaxError, ValueError) as err:
            raise UserError(f"image {self.files[index]} cannot be read ({err}); replace or delete that file") from None


class FileSource(LabelBatches):
    """Image files read by DataLoader workers (resize, crop, flip as torchvision's ImageNet recipe)."""

    def __init__(self, split, mean, std, augmentation: Augmentation, device: torch.device,
                 workers: int = 2):
        from torchvision import transforms as T

        self.device, self.workers = torch.device(device), workers
        size, resize = augmentation.image_size, augmentation.resize
        normalize = [T.ToTensor(), T.Normalize(mean, std)]
        train = [T.Resize(resize), T.RandomCrop(size)] + ([T.RandomHorizontalFlip()] if augmentation.hflip else [])
        self.train_set = _FileDataset(split.files, T.Compose(train + normalize))
        self.test_set = _FileDataset(split.files, T.Compose([T.Resize(resize), T.CenterCrop(size)] + normalize))

    def __len__(self) -> int:
        return len(self.train_set)

    def batches(self, indices: np.ndarray, batch_size: int, augment: bool = False,
                shuffle: torch.Generator | None = None, drop_last: bool = False, shard: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        key = int(torch.randint(2**62, (1,), generator=shuffle, device=shuffle.device)) if augment else None
        yield from loader_batches(self.train_set if augment else self.test_set, indices, batch_size, shuffle,
                                  drop_last, self.device, self.workers, shard, key)


def make_source(split, mean, std, augmentation: Augmentation, device, workers: int = 2):
    if split.images is not None:
        return TensorSource(split, mean, std, augmentation, device)
    return FileSource(split, mean, std, augmentation, device, workers)
