"""`./reproduce.sh bench selection`: the selection arithmetic alone, the loops the CPU runs against those a GPU
runs, on the same seeded features on one device. Core-set: 10,000 candidates and 1,000 labeled centres of 512
dimensions, 1,000 picks (issue 23's goal: at most 1 s on an H100 or H200). Suggestive Annotation: max-cover of
a 300-candidate shortlist over a 3,000-image pool, 150 picks (a Cityscapes-sized cycle). Each loop is timed on its
second run, after one at the same sizes."""
from __future__ import annotations

import torch

from baselines.committee import dense_max_cover, lazy_max_cover
from baselines.coreset import active_set_kcenter, dense_kcenter
from core.tools.bench import Benchmark, register_benchmark, timed


def penultimate_like(count: int, dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """Non-negative float32 rows, as pooled ReLU features are."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, dim, generator=generator).relu_().to(device)


def compare(name: str, device: torch.device, cpu_loop, gpu_loop) -> dict:
    """Both loops once untimed (kernel and cuBLAS set-up, the allocator), then each timed."""
    timed(device, cpu_loop)
    timed(device, gpu_loop)
    cpu_seconds, cpu_picks = timed(device, cpu_loop)
    gpu_seconds, gpu_picks = timed(device, gpu_loop)
    same = int((cpu_picks == gpu_picks).sum())
    print(f"  {name}: CPU loop {cpu_seconds:.3f} s, GPU loop {gpu_seconds:.3f} s, ratio (CPU loop / GPU loop) "
          f"{cpu_seconds / gpu_seconds:.2f}x; the same pick at {same} of {len(cpu_picks)} steps", flush=True)
    return {"cpu_loop": cpu_seconds, "gpu_loop": gpu_seconds, "same_picks": same}


def bench_selection(device: torch.device) -> dict:
    features = penultimate_like(11_000, 512, 0, device)
    descriptors = penultimate_like(3_000, 512, 1, device)
    print(f"selection arithmetic on {device} (features already on it):")
    return {
        "kcenter": compare("k-center, 10,000 + 1,000 x 512, 1,000 picks", device,
                           lambda: active_set_kcenter(features[:10_000], features[10_000:], 1_000),
                           lambda: dense_kcenter(features[:10_000], features[10_000:], 1_000)),
        "max_cover": compare("max-cover, 300 of 3,000 x 512, 150 picks", device,
                             lambda: lazy_max_cover(descriptors[:300], descriptors, 150),
                             lambda: dense_max_cover(descriptors[:300], descriptors, 150))}


register_benchmark(Benchmark("selection", lambda args, device: bench_selection(device),
                   "k-center and max-cover: the CPU loops against the GPU loops"))
