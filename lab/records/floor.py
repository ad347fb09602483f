"""The floor: the article's "40 seconds at 100% efficiency" calculation, for any machine.

minimum time = training FLOPs of the run / the device's peak FLOP/s, where training FLOPs =
forward+backward FLOPs per image (`torch.utils.flop_counter`: convolutions and matmuls) x
training images x epochs. The peak is measured by the engine (`lab.engine.peak`) with a short
matrix-multiply benchmark in the training dtype, shown beside the vendor's figure for known
GPUs; `--peak-tflops` overrides both. This module is the arithmetic and the vendors' table, so a
report computes its floor from the records without the training stack.
"""

from __future__ import annotations

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


def floor_seconds(total_flops: float, peak_tflops: float) -> float:
    return total_flops / (peak_tflops * 1e12)
