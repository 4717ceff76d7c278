"""`./reproduce.sh bench segmentation`: the cost of one full-size training step and of whole-image inference for
the Fig. 3 setting (DRN-D-22, batch 8, 688 x 688 random crops of Cityscapes-sized 1024 x 2048 frames, Adam,
bfloat16 autocast on CUDA), through the project's own trainer and source on synthetic frames."""
from __future__ import annotations

import time

import numpy as np
import torch

from core.config import TrainConfig
from core.datasets import Split
from core.evaluate import evaluate
from core.networks import build_network, parameter_count
from core.sources import Augmentation
from core.trainer import Trainer
from segmentation.data import CITYSCAPES_STATS, SegmentationSource


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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
                          drop_last=True, amp=amp, deterministic=False)
        generator = torch.Generator(device=device).manual_seed(0)
        _synchronize(device)
        started = time.perf_counter()
        Trainer(cfg, device, classes, progress=False).fit(model, source, labeled, split.targets, generator=generator)
        _synchronize(device)
        return time.perf_counter() - started

    train(1)                                   # warm-up: allocator, cuDNN algorithm choice
    step_seconds = train(steps) / steps
    _synchronize(device)
    started = time.perf_counter()
    evaluate(model, source, np.arange(4), split.targets, classes, 2, amp)
    inference_seconds = (time.perf_counter() - started) / 4
    print(f"{arch} (width {width:g}, {parameter_count(model):,} parameters), {device}, amp={amp}:")
    print(f"  training step, batch {batch_size} of {crop}x{crop} crops: {step_seconds:.3f} s "
          f"({batch_size / step_seconds:.1f} crops/s)")
    print(f"  whole-frame inference {frame[0]}x{frame[1]} (batch 2, mIoU accumulation included): "
          f"{inference_seconds:.3f} s per frame")
    print(f"  Fig. 3 Cityscapes cycle ({2975 * 100 // 8:,} iterations): about "
          f"{2975 * 100 // 8 * step_seconds / 3600:.1f} h of training")
    return {"step_seconds": step_seconds, "inference_seconds": inference_seconds}
