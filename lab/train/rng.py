"""Augmentation RNG draws, counted where they are made.

Every random draw of the augmentation goes through a `CountingRng`, which calls torch's
generator and adds one to its count per call. The records' `rng_calls` sums these counts (in
the DataLoader workers per sample, riding with each batch; in the main process per epoch), so
the plan's formulas (`lab.recipe.workload`) are checked against draws, not restated by them.
"""

from __future__ import annotations

import torch


class CountingRng:
    """torch's `randint`, `rand` and `randperm` on one generator (None: the process's default,
    as torchvision's transforms draw in each worker), counting the calls."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator
        self.calls = 0

    def randint(self, high: int, size: tuple[int, ...]) -> torch.Tensor:
        self.calls += 1
        return torch.randint(0, high, size, generator=self.generator, device=self._device())

    def rand(self, size: tuple[int, ...]) -> torch.Tensor:
        self.calls += 1
        return torch.rand(size, generator=self.generator, device=self._device())

    def randperm(self, n: int) -> torch.Tensor:
        self.calls += 1
        return torch.randperm(n, generator=self.generator, device=self._device())

    def _device(self) -> torch.device:
        return self.generator.device if self.generator is not None else torch.device("cpu")
