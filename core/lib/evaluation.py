"""Batched inference on the device. Outputs stay on the device; callers make one host transfer per pool.

Models either classify images (logits (B, C)) or label pixels (logits (B, C, H, W)). Dense outputs are never
kept for a whole pool: scores are reduced to one value per image batch by batch, and the test metric comes from
a confusion matrix accumulated on the device, which gives accuracy for labels and mIoU for masks. Under torchrun
every process counts its share of the images and the matrices are summed.

train.amp: bfloat16 autocast on CUDA covers the networks' forward passes only. Losses and scores are computed
from their outputs cast to float32, outside the autocast region: CUDA's autocast refuses binary_cross_entropy,
and probabilities in bfloat16 saturate (a sigmoid rounds to 1 from a logit of about 6 on). The small heads whose
outputs are probabilities or ranked scores (VAAL's discriminator, the loss-prediction module) run in float32
by themselves, inside an autocast region too (`without_autocast`).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from core.lib import parallel
from core.lib.fastpaths import inference

IGNORE_LABEL = 255          # pixels without a class in every segmentation dataset (Cityscapes, BDD100K, CamVid)


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def without_autocast(device: torch.device):
    """Float32 inside an `autocast` region (inputs must be cast to float32 as well); nothing to switch off on
    devices without autocast (the plan's meta tensors)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def class_last(outputs: torch.Tensor, class_dim: int = 1) -> torch.Tensor:
    """(..., C, H, W) -> (..., H, W, C), so per-pixel class distributions sit on the last dimension."""
    return outputs.movedim(class_dim, -1) if outputs.ndim > class_dim + 1 else outputs


def image_scores(scores: torch.Tensor) -> torch.Tensor:
    """(B,) image scores unchanged; (B, H, W) pixel scores -> their mean per image."""
    return scores.flatten(1).mean(1) if scores.ndim > 1 else scores


@torch.no_grad()
def map_batches(source, indices: np.ndarray, batch_size: int, compute: Callable, progress: str | None = None):
    """`compute(images)` on every batch of `indices` (no augmentation), concatenated in order; `compute` may
    return one tensor or a tuple of tensors with one row per image."""
    parts = []
    batches = source.batches(indices, batch_size)
    if progress:
        batches = tqdm(batches, total=-(-len(indices) // batch_size), desc=progress, leave=False)
    for images, _ in batches:
        parts.append(compute(images))
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts))
    return torch.cat(parts)


def predict(model, source, indices: np.ndarray, batch_size: int, features: bool = False, logits: bool = True,
            amp: bool = False, progress: str | None = None) -> dict[str, torch.Tensor]:
    """Logits (float32) and/or pooled penultimate features of `indices`, in that order, on the device, with
    the model in eval mode."""
    model.eval()
    forward = inference(model.forward_features, batch_size)

    def compute(images):
        with autocast(source.device, amp):
            out, feats, _ = forward(images)
        return tuple(t.float() for t, wanted in ((out, logits), (feats, features)) if wanted)

    names = [name for name, wanted in (("logits", logits), ("features", features)) if wanted]
    return dict(zip(names, map_batches(source, indices, batch_size, compute, progress)))


def softmax_scores(model, source, indices: np.ndarray, batch_size: int, reduce: Callable, amp: bool = False,
                   progress: str | None = None) -> torch.Tensor:
    """One score per image: `reduce` of the softmax with classes last ((B, C) or (B, H, W, C)), pixel scores
    averaged per image."""
    model.eval()
    forward = inference(model, batch_size)

    def compute(images):
        with autocast(source.device, amp):
            out = forward(images)
        return image_scores(reduce(class_last(torch.softmax(out.float(), dim=1))))

    return map_batches(source, indices, batch_size, compute, progress)


@torch.no_grad()
def confusion_matrix(model, source, indices: np.ndarray, answers: np.ndarray, num_classes: int, batch_size: int,
                     amp: bool = False) -> torch.Tensor:
    """(num_classes, num_classes) counts, rows = truth, columns = prediction, over every image (classification)
    or every non-ignored pixel (segmentation) of `indices`."""
    model.eval()
    answers_on_device = None if answers is None else torch.as_tensor(np.asarray(answers), dtype=torch.long,
                                                                     device=source.device)
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long, device=source.device)
    forward = inference(model, batch_size)
    for images, truth in source.labeled_batches(parallel.share(indices), answers_on_device, batch_size):
        with autocast(source.device, amp):
            predicted = forward(images).argmax(1)
        if truth.ndim > 1:
            keep = truth != IGNORE_LABEL
            truth, predicted = truth[keep], predicted[keep]
        # bincount without weights is deterministic on CUDA; with weights it is not
        counts += torch.bincount(truth.flatten() * num_classes + predicted.flatten(), minlength=num_classes ** 2)
    return parallel.sum_over_ranks(counts).view(num_classes, num_classes)


def accuracy_from_confusion(confusion: torch.Tensor) -> dict:
    """Top-1 accuracy (%) and per-class accuracy (%) of a confusion matrix."""
    confusion = confusion.double()
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    summary = torch.cat([(confusion.trace() / confusion.sum().clamp(min=1)).view(1), per_class]).cpu() * 100
    return {"value": float(summary[0]), "per_class": [round(float(v), 3) for v in summary[1:]]}


def iou_from_confusion(confusion: torch.Tensor) -> dict:
    """Mean IoU (%) over the classes that occur in the truth or the predictions, per-class IoU (%, None for a
    class in neither), and pixel accuracy (%), as fyu/drn's `per_class_iu` with `nanmean`."""
    confusion = confusion.double().cpu()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    iou = confusion.diag() / union.clamp(min=1) * 100
    present = union > 0
    mean = float(iou[present].mean()) if present.any() else 0.0
    pixel_accuracy = float(confusion.trace() / confusion.sum().clamp(min=1) * 100)
    return {"value": mean, "pixel_accuracy": pixel_accuracy,
            "per_class": [round(float(v), 3) if p else None for v, p in zip(iou, present)]}


def evaluate(model, source, indices: np.ndarray, answers: np.ndarray, num_classes: int, batch_size: int,
             amp: bool = False) -> dict:
    """The test metric under "value": accuracy (%) for classification sources, mIoU (%) for dense ones."""
    confusion = confusion_matrix(model, source, indices, answers, num_classes, batch_size, amp)
    return iou_from_confusion(confusion) if source.dense else accuracy_from_confusion(confusion)
