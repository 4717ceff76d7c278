"""`./reproduce.sh bench train`: one epoch of our trainer (uint8 data on the device, batched augmentation)
against a plain torchvision loop (ImageFolder JPEGs, per-image PIL transforms, DataLoader workers) on the same
network, images and batch size. Prints both rates and their ratio."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import TrainConfig
from core.datasets import CIFAR10_STATS, load_dataset, subsample
from core.errors import UserError
from core.networks import build_network
from core.sources import Augmentation, TensorSource
from core.trainer import Trainer, make_optimizer


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_our_trainer(split, device, arch: str, width: float, batch_size: int) -> float:
    source = TensorSource(split, *CIFAR10_STATS, Augmentation(hflip=True, crop_padding=4), device)
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=batch_size, epochs=1, deterministic=False)
    model = build_network(arch, 10, width=width).to(device)
    trainer = Trainer(cfg, device, 10, progress=False)
    trainer.fit(model, source, np.arange(min(len(split), 4 * batch_size)), split.targets)   # warm-up
    _synchronize(device)
    started = time.perf_counter()
    trainer.fit(model, source, np.arange(len(split)), split.targets)
    _synchronize(device)
    return len(split) / (time.perf_counter() - started)


def time_plain_loop(folder: Path, count: int, device, arch: str, width: float, batch_size: int) -> float:
    import torchvision
    from torchvision import transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(*CIFAR10_STATS)])
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    chosen = np.random.default_rng(0).permutation(len(dataset))[:count].tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, chosen), batch_size=batch_size,
                                         shuffle=True, num_workers=2, pin_memory=device.type == "cuda")
    model = build_network(arch, 10, width=width).to(device)
    optimizer = make_optimizer(model.parameters(), TrainConfig(optimizer="sgd", lr=0.01))
    model.train()
    _synchronize(device)
    started = time.perf_counter()
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _synchronize(device)
    return count / (time.perf_counter() - started)


def bench_train(data_root: Path, device: torch.device, images: int, width: float, arch: str,
                batch_size: int = 128) -> dict:
    folder = data_root / "cifar10" / "train"
    if not folder.is_dir():
        raise UserError(f"bench train reads the CIFAR-10 ImageFolder tree {folder}; point --data-root at it")
    split = subsample(load_dataset("cifar10", data_root).train, images, "bench")
    ours = time_our_trainer(split, device, arch, width, batch_size)
    plain = time_plain_loop(folder, len(split), device, arch, width, batch_size)
    print(f"one epoch of {len(split)} CIFAR-10 images, {arch} width {width:g}, batch {batch_size}, {device}:")
    print(f"  our trainer (uint8 on device, batched crop+flip): {ours:8.0f} images/s")
    print(f"  plain DataLoader loop (PIL per image, 2 workers):  {plain:8.0f} images/s")
    print(f"  ratio: {ours / plain:.2f}x")
    return {"ours": ours, "plain": plain, "ratio": ours / plain}
