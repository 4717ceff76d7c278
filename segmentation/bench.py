"""`./reproduce.sh bench segmentation`:
1. the cost of one full-size training step and of whole-image inference in the Fig. 3 setting (DRN-D-22,
   batch 8, 688 x 688 random crops of Cityscapes-sized 1024 x 2048 frames, Adam, bfloat16 autocast on CUDA),
   through the project's trainer and source on synthetic frames;
2. on CamVid, our data path (uint8 frames on the device, batched joint crop/flip) against a plain one (PIL
   decoding and per-sample crop/flip in 2 DataLoader workers): batches per second alone, and training steps
   per second of the same network.
Every timing follows a warm-up at its shapes: a training step, an inference pass, a batch and a step per path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.lib import (IGNORE_LABEL, Augmentation, Split, TrainConfig, Trainer, build_network, evaluate, load_dataset,
                      make_optimizer, parameter_count, resolve_data_root)
from core.tools.bench import Benchmark, register_benchmark, timed
from segmentation.data import CITYSCAPES_STATS, SegmentationSource


def synthetic_frames(count: int, height: int, width: int, classes: int) -> Split:
    rng = np.random.default_rng(0)
    return Split(targets=np.zeros(count, dtype=np.int64),
                 images=rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8),
                 masks=rng.integers(0, classes, (count, height, width), dtype=np.uint8))


def bench_segmentation(device: torch.device, arch: str, width: float, steps: int, batch_size: int = 8,
                       crop: int = 688, frame: tuple[int, int] = (1024, 2048), classes: int = 19) -> dict:
    split = synthetic_frames(max(batch_size, 4), *frame, classes)
    source = SegmentationSource(split, *CITYSCAPES_STATS, None, Augmentation(hflip=True, image_size=crop, resize=0),
                                device)
    model = build_network(arch, classes, width=width).to(device)
    amp = device.type == "cuda"
    labeled = np.arange(len(split))

    def train(iterations: int) -> float:
        cfg = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0, batch_size=batch_size, iterations=iterations,
                          drop_last=True, amp=amp)
        generator = torch.Generator(device=device).manual_seed(0)
        trainer = Trainer(cfg, device, classes, progress=False)
        return timed(device, lambda: trainer.fit(model, source, labeled, split.targets, generator=generator))[0]

    train(1)                                   # warm-up: allocator, cuDNN algorithm choice
    step_seconds = train(steps) / steps
    evaluate(model, source, np.arange(2), split.targets, classes, 2, amp)      # warm-up at the timed shapes
    inference_seconds = timed(device, lambda: evaluate(model, source, np.arange(4), split.targets, classes, 2,
                                                       amp))[0] / 4
    print(f"{arch} (width {width:g}, {parameter_count(model):,} parameters), {device}, amp={amp}:")
    print(f"  training step, batch {batch_size} of {crop}x{crop} crops: {step_seconds:.3f} s "
          f"({batch_size / step_seconds:.1f} crops/s)")
    print(f"  whole-frame inference {frame[0]}x{frame[1]} (batch 2, mIoU accumulation included): "
          f"{inference_seconds:.3f} s per frame")
    print(f"  Fig. 3 Cityscapes cycle ({2975 * 100 // 8:,} iterations): about "
          f"{2975 * 100 // 8 * step_seconds / 3600:.1f} h of training")
    return {"step_seconds": step_seconds, "inference_seconds": inference_seconds}


class PlainPairs(torch.utils.data.Dataset):
    """The usual per-sample pipeline: PIL decoding, random crop and flip in numpy, normalisation on the CPU."""

    def __init__(self, split: Split, table: np.ndarray, mean, std, crop: int):
        self.split, self.table, self.crop = split, table, crop
        self.mean, self.std = np.asarray(mean, np.float32) * 255, np.asarray(std, np.float32) * 255

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.split.files[index]) as image, Image.open(self.split.masks[index]) as mask:
            pixels, labels = np.asarray(image.convert("RGB")), self.table[np.asarray(mask)]
        top = np.random.randint(pixels.shape[0] - self.crop + 1)
        left = np.random.randint(pixels.shape[1] - self.crop + 1)
        pixels = pixels[top:top + self.crop, left:left + self.crop]
        labels = labels[top:top + self.crop, left:left + self.crop]
        if np.random.rand() < 0.5:
            pixels, labels = pixels[:, ::-1], labels[:, ::-1]
        pixels = (pixels.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy()), torch.from_numpy(labels.astype(np.int64))


def bench_camvid_pipeline(data_root: Path, device: torch.device, arch: str, width: float, batch_size: int = 8,
                          crop: int = 352, steps: int = 20) -> dict:
    from segmentation.data import CAMVID_TABLE

    dataset = load_dataset("camvid", data_root)
    files = load_dataset("camvid", data_root, in_memory=False).train
    ours = dataset.make_source(dataset.train, Augmentation(hflip=True, image_size=crop, resize=0), device)
    plain = torch.utils.data.DataLoader(PlainPairs(files, CAMVID_TABLE, dataset.mean, dataset.std, crop),
                                        batch_size=batch_size, shuffle=True, num_workers=2, drop_last=True,
                                        pin_memory=device.type == "cuda")
    generator = torch.Generator(device=device).manual_seed(0)
    labeled = np.arange(len(dataset.train))

    def our_batches():
        while True:
            yield from ours.labeled_batches(labeled, None, batch_size, augment=True, shuffle=generator,
                                            drop_last=True)

    def plain_batches():
        while True:
            for images, masks in plain:
                yield images.to(device, non_blocking=True), masks.to(device, non_blocking=True)

    model = build_network(arch, dataset.num_classes, width=width).to(device)
    optimizer = make_optimizer(model.parameters(), TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0))

    def step(images, masks) -> None:
        loss = F.cross_entropy(model(images), masks, ignore_index=IGNORE_LABEL)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def rate(batches, train: bool) -> float:
        images, masks = next(batches)                  # warm-up: workers started, first batch decoded,
        if train:                                      # and a step at the timed shapes (cuDNN, allocator)
            step(images, masks)
        def run_steps():
            for _ in range(steps):
                images, masks = next(batches)
                if train:
                    step(images, masks)

        return steps / timed(device, run_steps)[0]

    model.train()
    results = {f"{kind}_{path}": rate(make(), kind == "train")
               for kind in ("data", "train") for path, make in (("ours", our_batches), ("plain", plain_batches))}
    print(f"CamVid 360x480, batch {batch_size} of {crop}x{crop} crops + masks, {device}:")
    for kind, what in (("data", "batches alone"), ("train", f"training steps of {arch} width {width:g}")):
        ours_rate, plain_rate = results[f"{kind}_ours"], results[f"{kind}_plain"]
        print(f"  {what}: ours {ours_rate:.2f}/s, plain {plain_rate:.2f}/s, ratio {ours_rate / plain_rate:.2f}x")
    return results


def run_segmentation_benchmarks(args, device: torch.device) -> dict:
    arch, width, batch_size = args.arch or "drn_d_22", args.width or 1.0, args.batch_size or 8
    step = bench_segmentation(device, arch, width, args.steps, batch_size)
    return {**step, **bench_camvid_pipeline(resolve_data_root(args.data_root), device, arch, width, batch_size)}


register_benchmark(Benchmark("segmentation", run_segmentation_benchmarks,
                   "a full-size DRN-D-22 step (VAAL Fig. 3 setting) and the CamVid data path"))
