"""Segmentation datasets in their official layouts, and the source that batches image/mask pairs on the device.

- Cityscapes: `leftImg8bit/{train,val}/<city>/*_leftImg8bit.png` with `gtFine/{train,val}/<city>/
  *_gtFine_labelIds.png`, label ids mapped to the 19 training ids (255 ignored) by the table of the official
  cityscapesScripts `labels.py`. The official val (500) is the test set (REFERENCES V15).
- BDD100K: `images/10k/{train,val}/*.jpg` with `labels/sem_seg/masks/{train,val}/*.png` holding train ids
  0-18 and 255. The official val (1,000) is the test set; the validation set is carved out of train (V15).
- CamVid (SegNet tutorial copy, `../shared/datasets/camvid`): `{train,test}/` with `{train,test}annot/`, 11
  classes, 11 = void mapped to 255.

Image-level `targets` are all 0: the oracle answers a query with the image's mask, which the source reads.
Small datasets (CamVid) are decoded once into memory and kept on the device; large ones are read by DataLoader
workers. Either way a batch arrives on the device as uint8, where it is resized (profiles), randomly cropped
and flipped together with its masks, and normalised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from core.lib import (IGNORE_LABEL, IMAGENET_STATS, Augmentation, DatasetSpec, ImageDataset, Split, UserError,
                      decode_cached, index_batches, loader_batches, rank_rows)

CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]
# cityscapesScripts labels.py: label id -> train id for the 19 evaluated classes; every other id is ignored
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_STATS = ((0.2901, 0.3281, 0.2870), (0.1830, 0.1866, 0.1845))        # fyu/drn datasets/cityscapes/info.json
CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian",
                  "bicyclist"]
CAMVID_STATS = ((0.4116, 0.4248, 0.4322), (0.3067, 0.3111, 0.3067))            # the 367 training frames
IN_MEMORY_BYTES = 2 * 1024 ** 3          # decode a split into memory when its images and masks fit in this


def lookup_table(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry uint8 table sending every raw mask value to its train id, unknown values to 255."""
    table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for raw, train_id in mapping.items():
        table[raw] = train_id
    return table


CITYSCAPES_TABLE = lookup_table(CITYSCAPES_TRAIN_IDS)
BDD100K_TABLE = lookup_table({k: k for k in range(19)})
CAMVID_TABLE = lookup_table({k: k for k in range(11)})


@dataclass
class SegmentationDataset(ImageDataset):
    label_table: np.ndarray | None = None       # raw mask value -> train id (255: ignored)

    def make_source(self, split: Split, augmentation: Augmentation, device, workers: int = 2):
        return SegmentationSource(split, self.mean, self.std, self.label_table, augmentation, device, workers)


def _pair_split(images: list[str], masks: list[str], table: np.ndarray, in_memory: bool | None,
                cache_dir: Path) -> Split:
    targets = np.zeros(len(images), dtype=np.int64)
    if in_memory is None:
        from PIL import Image

        with Image.open(images[0]) as first:
            width, height = first.size
        in_memory = len(images) * width * height * 4 <= IN_MEMORY_BYTES
    if not in_memory:
        return Split(targets=targets, files=images, masks=masks)
    try:
        decoded_images = decode_cached(images, 3, cache_dir)
        decoded_masks = table[decode_cached(masks, 0, cache_dir)[..., 0]]
    except ValueError as err:
        raise UserError(f"images of one split must share a size to be kept in memory ({err}); "
                        "resize them, or load the dataset from files") from None
    return Split(targets=targets, images=decoded_images, masks=decoded_masks)


def _require_dir(folder: Path, dataset: str, layout: str) -> None:
    if not folder.is_dir():
        raise UserError(f"dataset {dataset} not found: expected {folder} ({layout}); fix --data-root or "
                        "AL_DATA_ROOT")


def _sorted_files(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())


def _paired(images: list[Path], mask_of, dataset: str) -> tuple[list[str], list[str]]:
    masks = [mask_of(p) for p in images]
    missing = [str(m) for m in masks if not m.is_file()]
    if missing:
        raise UserError(f"{dataset}: {len(missing)} images have no mask, e.g. {missing[0]}; "
                        "the masks must sit in the official layout next to the images")
    if not images:
        raise UserError(f"{dataset}: no images found; check the official layout under the data root")
    return [str(p) for p in images], [str(m) for m in masks]


def cityscapes_files(folder: Path, split: str) -> tuple[list[str], list[str]]:
    image_dir = folder / "leftImg8bit" / split
    _require_dir(image_dir, "cityscapes", "leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and gtFine/...")
    images = _sorted_files(image_dir, "_leftImg8bit.png")

    def mask_of(path: Path) -> Path:
        stem = path.name.removesuffix("_leftImg8bit.png")
        return folder / "gtFine" / split / path.parent.name / f"{stem}_gtFine_labelIds.png"

    return _paired(images, mask_of, "cityscapes")


def bdd100k_files(folder: Path, split: str) -> tuple[list[str], list[str]]:
    image_dir = folder / "images" / "10k" / split
    _require_dir(image_dir, "bdd100k", "images/10k/{train,val}/*.jpg and labels/sem_seg/masks/{train,val}/*.png")
    images = _sorted_files(image_dir, ".jpg")
    return _paired(images, lambda p: folder / "labels" / "sem_seg" / "masks" / split / f"{p.stem}.png", "bdd100k")


def camvid_files(folder: Path, split: str) -> tuple[list[str], list[str]]:
    _require_dir(folder / split, "camvid", "train/, test/ and trainannot/, testannot/ (SegNet tutorial layout)")
    images = sorted(p for p in (folder / split).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return _paired(images, lambda p: folder / f"{split}annot" / f"{p.stem}.png", "camvid")


def _load(name: str, classes: list[str], stats, table: np.ndarray, list_files, folder: Path, splits: tuple[str, str],
          cache_dir: Path, in_memory: bool | None) -> SegmentationDataset:
    train, test = (_pair_split(*list_files(folder, split), table, in_memory, cache_dir) for split in splits)
    return SegmentationDataset(name, list(classes), train, test, *stats, label_table=table)


def load_cityscapes(root: Path, cache_dir: Path, in_memory: bool | None = None):
    return _load("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_STATS, CITYSCAPES_TABLE, cityscapes_files,
                 root / "cityscapes", ("train", "val"), cache_dir, in_memory)


def load_bdd100k(root: Path, cache_dir: Path, in_memory: bool | None = None):
    # fyu/drn publishes no BDD100K statistics: ImageNet's, as for its pretrained backbone
    return _load("bdd100k", CITYSCAPES_CLASSES, IMAGENET_STATS, BDD100K_TABLE, bdd100k_files, root / "bdd100k",
                 ("train", "val"), cache_dir, in_memory)


def load_camvid(root: Path, cache_dir: Path, in_memory: bool | None = None):
    return _load("camvid", CAMVID_CLASSES, CAMVID_STATS, CAMVID_TABLE, camvid_files, root / "camvid",
                 ("train", "test"), cache_dir, in_memory)


# train and test images (the official val sets serve as test, V15) and the stored (H, W)
SPECS = (DatasetSpec("cityscapes", load_cityscapes, len(CITYSCAPES_CLASSES), 2975, 500, image_size=(1024, 2048)),
         DatasetSpec("bdd100k", load_bdd100k, len(CITYSCAPES_CLASSES), 7000, 1000, image_size=(720, 1280)),
         DatasetSpec("camvid", load_camvid, len(CAMVID_CLASSES), 367, 233, image_size=(360, 480)))


# ---------------------------------------------------------------- batches on the device

class _PairFiles(torch.utils.data.Dataset):
    def __init__(self, images: list[str], masks: list[str], table: np.ndarray):
        self.images, self.masks, self.table = images, masks, table

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, None]):
        from PIL import Image

        index, _ = item
        with Image.open(self.images[index]) as image:
            pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
        with Image.open(self.masks[index]) as mask:
            labels = torch.from_numpy(self.table[np.asarray(mask)])
        return pixels, labels, index


def resize_pair(images: torch.Tensor, masks: torch.Tensor, shorter_side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images bilinearly (antialiased), masks by nearest neighbour, so that the shorter side is `shorter_side`."""
    height, width = images.shape[-2:]
    scale = shorter_side / min(height, width)
    size = (int(round(height * scale)), int(round(width * scale)))
    if size == (height, width):
        return images, masks
    images = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    masks = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0]
    return images.round().clamp(0, 255).to(torch.uint8), masks.to(torch.uint8)


def fyu_reflection(size: int, before: int, after: int) -> np.ndarray:
    """Source positions along one side padded as fyu/drn's `pad_reflection`: the start mirrored without its edge
    pixel, the end with it, repeated while a pad exceeds the side."""
    positions = np.arange(size)
    while before or after:
        last = len(positions) - 1
        step_before, step_after = min(before, last), min(after, last)
        positions = np.concatenate([positions[step_before:0:-1], positions,
                                    positions[last:last - step_after:-1]])
        before, after = before - step_before, after - step_after
    return positions


def pad_to_crop(images: torch.Tensor, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fyu/drn's RandomCrop padding of sides shorter than the crop: centred, images reflected, masks ignored."""
    height, width = images.shape[-2:]
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if not (pad_h or pad_w):
        return images, masks
    top, left = pad_h // 2, pad_w // 2
    rows = torch.as_tensor(fyu_reflection(height, top, pad_h - top), device=images.device)
    cols = torch.as_tensor(fyu_reflection(width, left, pad_w - left), device=images.device)
    images = images[:, :, rows[:, None], cols[None, :]]
    masks = F.pad(masks, (left, pad_w - left, top, pad_h - top), value=IGNORE_LABEL)
    return images, masks


def crop_pair(images: torch.Tensor, masks: torch.Tensor, size: int, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random `size` x `size` crop for each image and its mask, sides shorter than the crop first padded
    as fyu/drn's RandomCrop does (`pad_to_crop`)."""
    images, masks = pad_to_crop(images, masks, size)
    batch, _, height, width = images.shape
    device = images.device
    limits = torch.tensor([height - size + 1, width - size + 1], device=generator.device)
    offsets = (torch.rand(2, batch, device=generator.device, generator=generator) * limits[:, None]).long().to(device)
    steps = torch.arange(size, device=device)
    rows, cols = (offsets[0, :, None] + steps)[:, :, None], (offsets[1, :, None] + steps)[:, None, :]
    picked = torch.arange(batch, device=device)[:, None, None]
    images = images.permute(0, 2, 3, 1)[picked, rows, cols].permute(0, 3, 1, 2)
    return images, masks[picked, rows, cols]


def crop_flip_pair(images: torch.Tensor, masks: torch.Tensor, size: int, hflip: bool, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random `size` x `size` crop and horizontal flip for each image and its mask, the whole batch at
    once; size 0 keeps the whole images (DAAL Sec. 4.2: no augmentation)."""
    batch, device = images.shape[0], images.device
    if size:
        images, masks = crop_pair(images, masks, size, generator)
    if hflip:
        flip = (torch.rand(batch, device=generator.device, generator=generator) < 0.5).to(device)
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
        masks = torch.where(flip[:, None, None], masks.flip(2), masks)
    return images, masks


class SegmentationSource:
    """Image/mask pairs of one split: (images, dataset indices) from `batches`, (images, masks) from
    `labeled_batches`, both on the device. Augmented batches are cropped to `augmentation.image_size` (0: not
    cropped) and flipped when `augmentation.hflip`; unaugmented ones are whole images. `augmentation.resize` > 0
    first scales the shorter side to it."""

    dense = True

    def __init__(self, split: Split, mean, std, table: np.ndarray, augmentation: Augmentation, device,
                 workers: int = 2):
        self.device = torch.device(device)
        self.augmentation, self.workers = augmentation, workers
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        self.count = len(split)
        if split.images is not None:
            self.images = torch.from_numpy(split.images).to(self.device)
            self.masks = torch.from_numpy(np.asarray(split.masks)).to(self.device)
            self.files = None
        else:
            self.files = _PairFiles(split.files, split.masks, table)

    def __len__(self) -> int:
        return self.count

    def _raw_batches(self, indices: np.ndarray, batch_size: int, shuffle: torch.Generator | None, drop_last: bool
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """uint8 images (B, H, W, 3), uint8 masks (B, H, W) and indices, on the device."""
        if self.files is not None:
            yield from loader_batches(self.files, indices, batch_size, shuffle, drop_last, self.device, self.workers)
            return
        for chosen in index_batches(indices, batch_size, shuffle, drop_last, self.device):
            yield self.images[chosen], self.masks[chosen], chosen

    def _pairs(self, indices, batch_size, augment, shuffle, drop_last):
        aug = self.augmentation
        for images, masks, chosen in self._raw_batches(indices, batch_size, shuffle, drop_last):
            images = images.permute(0, 3, 1, 2)
            if aug.resize:
                images, masks = resize_pair(images, masks, aug.resize)
            if augment:
                images, masks = crop_flip_pair(images, masks, aug.image_size, aug.hflip, shuffle)
            # NCHW for the network: the crop leaves channels-last strides, whose CPU convolution backward crashes
            images = images.to(torch.float32, memory_format=torch.contiguous_format)
            yield (images - self.mean) / self.std, masks.long(), chosen

    def batches(self, indices: np.ndarray, batch_size: int, augment: bool = False,
                shuffle: torch.Generator | None = None, drop_last: bool = False):
        for images, _, chosen in self._pairs(indices, batch_size, augment, shuffle, drop_last):
            yield images, chosen

    def labeled_batches(self, indices: np.ndarray, answers: torch.Tensor, batch_size: int, augment: bool = False,
                        shuffle: torch.Generator | None = None, drop_last: bool = False, shard: bool = False):
        """Sharded (torchrun), every process reads and augments the whole batch and keeps its rows: the crops
        draw from the shuffling generator, whose draws must stay the same on every process."""
        for images, masks, _ in self._pairs(indices, batch_size, augment, shuffle, drop_last):
            part = rank_rows(len(images)) if shard else slice(None)
            yield images[part], masks[part]

