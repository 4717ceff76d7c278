"""Batched inference on the device. Outputs stay on the device; callers make one host transfer per pool."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def predict(model, source, indices: np.ndarray, batch_size: int, features: bool = False, eval_mode: bool = True,
            amp: bool = False, progress: str | None = None) -> dict[str, torch.Tensor]:
    """Logits (float32) and optionally penultimate features of `indices`, in that order, on the device.

    eval_mode=False leaves the model's modes as the caller set them (MC-Dropout keeps dropout on)."""
    if eval_mode:
        model.eval()
    logits, embeddings = [], []
    batches = source.batches(indices, batch_size)
    if progress:
        batches = tqdm(batches, total=-(-len(indices) // batch_size), desc=progress, leave=False)
    for images, _ in batches:
        with autocast(source.device, amp):
            out, feats, _ = model.forward_features(images)
        logits.append(out.float())
        if features:
            embeddings.append(feats.float())
    result = {"logits": torch.cat(logits)}
    if features:
        result["features"] = torch.cat(embeddings)
    return result


def accuracy(model, source, indices: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
             amp: bool = False) -> dict:
    """Top-1 accuracy (%) and per-class accuracy (%), computed on the device with one transfer at the end."""
    logits = predict(model, source, indices, batch_size, amp=amp)["logits"]
    truth = torch.as_tensor(np.asarray(labels), device=logits.device)
    correct = logits.argmax(1) == truth
    per_class_total = torch.bincount(truth, minlength=num_classes).float()
    # bincount without weights is deterministic on CUDA; with weights it is not
    per_class_correct = torch.bincount(truth[correct], minlength=num_classes).float()
    summary = torch.cat([correct.float().mean().view(1), per_class_correct / per_class_total.clamp(min=1)])
    summary = summary.cpu() * 100
    return {"accuracy": float(summary[0]), "per_class": [round(float(v), 3) for v in summary[1:]]}
