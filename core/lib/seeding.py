"""Deterministic random streams, one per (seed, purpose), so methods share splits and resumes are exact."""
import hashlib
import os
import random

import numpy as np
import torch


def stream_key(*parts) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def numpy_rng(*parts) -> np.random.Generator:
    return np.random.default_rng(stream_key(*parts))


def seed_everything(*parts) -> int:
    """Seed python, numpy and torch (all devices) from the given parts; returns the derived seed."""
    seed = stream_key(*parts) % (2**31)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def set_deterministic(enabled: bool) -> None:
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS, read at its init
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    torch.use_deterministic_algorithms(enabled)


def float_settings(device) -> dict:
    """What besides code and seed changes a run's floats on the GPU (None on another device), for every row."""
    cuda = torch.device(device).type == "cuda"
    values = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.version.cuda,
              torch.backends.cudnn.version()) if cuda else (None,) * 4
    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            **dict(zip(("tf32_matmul", "tf32_cudnn", "cuda_version", "cudnn_version"), values))}
