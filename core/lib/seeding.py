"""Deterministic random streams, one per (seed, purpose), so methods share splits and resumes are exact; and the
switches that make the kernels deterministic, with the settings a row records because they change GPU floats."""
import contextlib
import hashlib
import os
import random

import numpy as np
import torch

# PyTorch's text when an op without a deterministic kernel runs under use_deterministic_algorithms(True)
NO_DETERMINISTIC_KERNEL = " does not have a deterministic implementation"


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
    """Strict when enabled: an op that CUDA cannot run deterministically raises (runtime.deterministic=false
    allows it, and the rows say so)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS, read at its init
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    torch.use_deterministic_algorithms(enabled)


@contextlib.contextmanager
def nondeterministic_kernel_allowed():
    """For a kernel whose only nondeterministic part is not used by the call, which PyTorch cannot tell (the
    grid sampler's backward without the input's gradient): the determinism check is off inside, then restored."""
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def nondeterministic_kernel(err: BaseException) -> str | None:
    """The kernel named by PyTorch's error for an op without a deterministic implementation, else None."""
    text = str(err)
    return text.split(NO_DETERMINISTIC_KERNEL)[0].split()[-1] if NO_DETERMINISTIC_KERNEL in text else None


def float_settings(device) -> dict:
    """The settings besides the code and the seed that change a run's floats on the GPU, for every row: whether
    kernels are deterministic, TF32 in matmuls and in cuDNN convolutions, and the CUDA and cuDNN versions. The
    CUDA-only ones are None on another device, where they change nothing."""
    cuda = torch.device(device).type == "cuda"
    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32 if cuda else None,
            "cuda_version": torch.version.cuda if cuda else None,
            "cudnn_version": torch.backends.cudnn.version() if cuda else None}
