"""Timing the device's work, not its launches: one small interface, two clocks.

On CUDA a kernel launch returns at once and the work runs later, so a CPU clock around a phase
(forward, backward, optimiser) times the launches; `CudaClock` records CUDA events in the
stream instead and reads the time between them once the step has been waited for. On a CPU the
work runs where it is launched, and `CpuClock` is the CPU's own clock. `PhaseTimes` times the
named phases of a step with either; `PhaseLedger` splits a whole timed pass into phases that
tile it, on either, read once at the pass's end.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import torch


class Clock(Protocol):
    def mark(self) -> Any:
        """A point in the device's stream of work."""

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds of device work between two marks (waits for the later one)."""


class CpuClock:
    def mark(self) -> float:
        return time.perf_counter()

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaClock:
    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        end.synchronize()
        return start.elapsed_time(end) / 1000  # elapsed_time is in milliseconds


def clock_for(device: torch.device) -> Clock:
    return CudaClock() if device.type == "cuda" else CpuClock()


class PhaseTimes:
    """Seconds per phase over the steps that are kept: `phase(name)` opens a range (and the
    `label`'s, e.g. a profiler range) and marks the clock at both ends; `end_step(keep)` reads
    the step's marks once its work is done and adds them up when `keep`."""

    def __init__(
        self, clock: Clock, label: Callable[[str], AbstractContextManager] | None = None
    ) -> None:
        self.clock, self.label = clock, label
        self.pending: list[tuple[str, Any, Any]] = []
        self.totals: dict[str, float] = defaultdict(float)
        self.steps = 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.label(name) if self.label is not None else _nothing():
            start = self.clock.mark()
            yield
            self.pending.append((name, start, self.clock.mark()))

    def end_step(self, keep: bool = True) -> None:
        if keep:
            for name, start, end in self.pending:
                self.totals[name] += self.clock.seconds(start, end)
            self.steps += 1
        self.pending.clear()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class PhaseLedger:
    """A timed pass split into named phases that tile it: `enter(phase)` ends the current
    phase and starts `phase` at one clock mark, so consecutive phases share their boundary and
    their seconds add up to the span from the first mark to `close()`'s. A phase entered
    again adds to its seconds. On CUDA the marks are events and are read once, at `close()`
    (one wait at the pass's end, none per step); on a CPU a mark is one `perf_counter` call.

    The loop learns that a wait was its last only when the iterator ends, so `relabel` renames
    the current phase (the last batch wait becomes the pass's edge)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.marks: list[tuple[str, Any]] = []

    def enter(self, phase: str) -> None:
        self.marks.append((phase, self.clock.mark()))

    def relabel(self, phase: str) -> None:
        self.marks[-1] = (phase, self.marks[-1][1])

    def close(self) -> dict[str, float]:
        """Seconds per phase, in the order phases were first entered; the ledger is emptied."""
        ends = [mark for _, mark in self.marks[1:]] + [self.clock.mark()]
        totals: dict[str, float] = {}
        for (phase, start), end in zip(self.marks, ends, strict=True):
            totals[phase] = totals.get(phase, 0.0) + self.clock.seconds(start, end)
        self.marks.clear()
        return totals


class NoLedger(PhaseLedger):
    """A ledger that marks nothing: the accounting switched off (lab.bench pairs the two)."""

    def enter(self, phase: str) -> None:
        pass

    def relabel(self, phase: str) -> None:
        pass

    def close(self) -> dict[str, float]:
        return {}
