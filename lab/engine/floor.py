"""The floor: the article's "40 seconds at 100% efficiency" calculation, for any machine.

minimum time = training FLOPs of the run / the device's peak FLOP/s, where training FLOPs =
forward+backward FLOPs per image (`torch.utils.flop_counter`: convolutions and matmuls) x
training images x epochs. The peak is measured with a short matrix-multiply benchmark in the
training dtype, shown beside the vendor's figure for known GPUs; `--peak-tflops` overrides both.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: reports read this module without it
    import torch

# Dense fp16/bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets.
VENDOR_PEAK_TFLOPS: dict[str, float] = {
    "V100": 125.0,
    "A100": 312.0,
    "H100": 989.0,  # SXM; the PCIe card is lower (756)
    "H200": 989.0,  # the H100's compute with more, faster memory
}


def vendor_peak_tflops(device_name: str) -> float | None:
    """The data-sheet peak for a known GPU name, else None (CPUs have no entry)."""
    if "H100" in device_name and "PCIe" in device_name:
        return 756.0
    for key, peak in VENDOR_PEAK_TFLOPS.items():
        if key in device_name:
            return peak
    return None


def training_dtype(device: torch.device, precision: str) -> torch.dtype:
    import torch

    return (
        torch.float16
        if device.type == "cuda" and precision in ("fp16", "autocast")
        else (torch.float32)
    )


def measure_peak_tflops(
    device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5
) -> float:
    """Best observed matmul throughput (TFLOP/s) over a few square multiplies."""
    import torch

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


def floor_seconds(total_flops: float, peak_tflops: float) -> float:
    return total_flops / (peak_tflops * 1e12)
