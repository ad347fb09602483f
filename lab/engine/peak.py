"""The device's measured peak FLOP/s, for the floor (`lab.records.floor`): a short
matrix-multiply benchmark in the training dtype."""

from __future__ import annotations

import time

import torch


def training_dtype(device: torch.device, precision: str) -> torch.dtype:
    return (
        torch.float16
        if device.type == "cuda" and precision in ("fp16", "autocast")
        else (torch.float32)
    )


def measure_peak_tflops(
    device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5
) -> float:
    """Best observed matmul throughput (TFLOP/s) over a few square multiplies."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flops = 2 * size**3
    torch.matmul(a, b)  # warm-up: thread pools, cuBLAS handles, clocks
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels are asynchronous: time them, not the launch
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e12
