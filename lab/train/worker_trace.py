"""DataLoader workers' own timeline, recorded only for a profiled pass.

torch.profiler traces the process it runs in; the DataLoader's worker processes are not in the
trace at all. A profiled pass (`lab.profiling.passes`) asks for their timeline by naming a
directory in `$LAB_WORKER_TRACE` (`tracing_workers_to`) before the trainer builds its pipeline;
`build_loader_pipeline` then wraps each multi-process loader's dataset and collate function
(`traced_loader_parts`), and every worker appends, as JSON lines to `<dir>/<pid>.jsonl`:

- "worker start": from the main process's `Process.start()` for this worker (stamped by the
  loader's multiprocessing context, `stamped_context`) to the end of `worker_init_fn`, when the
  worker is ready for its first batch;
- per batch it builds, three back-to-back ranges: "fetch" (indexing every sample of the batch:
  the array row and label), "augment" ("transform" for the test set: crop, flip, cutout, to
  tensor and normalise, whatever the pipeline does per sample) and "collate" (stacking the
  samples into the batch's tensors).

Times are `time.perf_counter_ns()` readings (CLOCK_MONOTONIC, one clock for every process of
the machine); the profiled pass maps them onto the trace's clock and merges them
(`lab.profiling.worker_rows`). Without the variable nothing is wrapped and the timed runs run
the datasets and DataLoaders exactly as built; the one change they share with a profiled pass
is that a sample is built in two calls (`StagedDataset`: fetch, then transform).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context as mp_context
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

WORKER_TRACE_ENV = "LAB_WORKER_TRACE"
EVENT_SUFFIX = ".jsonl"


def worker_trace_dir() -> Path | None:
    """The directory a profiled pass asked workers to write into; None for every other run."""
    value = os.environ.get(WORKER_TRACE_ENV)
    return Path(value) if value else None


@contextmanager
def tracing_workers_to(directory: Path) -> Iterator[None]:
    """Pipelines built inside this block record their workers' timeline into `directory`."""
    previous = os.environ.get(WORKER_TRACE_ENV)
    os.environ[WORKER_TRACE_ENV] = str(directory)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WORKER_TRACE_ENV, None)
        else:
            os.environ[WORKER_TRACE_ENV] = previous


class StagedDataset(Dataset):
    """A dataset whose sample is built in two stages, `fetch(index)` (the stored sample) and
    `transform(fetched)` (the per-sample work), so a traced worker can time them apart."""

    def fetch(self, index: int) -> Any:
        raise NotImplementedError

    def transform(self, fetched: Any) -> tuple[Any, int, int]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        return self.transform(self.fetch(index))


# ----------------------------------------------------------------------------- worker start


class _StampedStart:
    """`start()` notes when the main process launched this worker; the stamp travels into the
    child with the process object (copied by fork, pickled by spawn and forkserver)."""

    lab_start_ns: int | None = None

    def start(self) -> None:
        self.lab_start_ns = time.perf_counter_ns()
        super().start()  # type: ignore[misc]


class _ForkProcess(_StampedStart, mp_context.ForkProcess):
    pass


class _SpawnProcess(_StampedStart, mp_context.SpawnProcess):
    pass


class _ForkServerProcess(_StampedStart, mp_context.ForkServerProcess):
    pass


class _ForkContext(mp_context.ForkContext):
    Process = _ForkProcess


class _SpawnContext(mp_context.SpawnContext):
    Process = _SpawnProcess


class _ForkServerContext(mp_context.ForkServerContext):
    Process = _ForkServerProcess


_STAMPED_CONTEXTS = {"fork": _ForkContext, "spawn": _SpawnContext, "forkserver": _ForkServerContext}


def stamped_context() -> mp_context.BaseContext:
    """The process's own start method (what the loader would use anyway), with stamped
    `Process.start()`."""
    return _STAMPED_CONTEXTS[multiprocessing.get_start_method()]()


# ----------------------------------------------------------------------------- recording


class WorkerTrace:
    """One loader's recorder: picklable (a directory and the loader's name); in each worker it
    appends one JSON line per event to that worker's own file, unbuffered, so what a worker
    wrote survives its shutdown."""

    def __init__(self, directory: Path, loader: str) -> None:
        self.directory, self.loader = str(directory), loader
        self.batches = 0
        self.pending: tuple[int, int, int, int] | None = None  # fetch, transform, collate, n
        self._fd: int | None = None
        self._fd_pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_fd_pid": None}

    def _write(self, events: list[dict[str, Any]]) -> None:
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            path = os.path.join(self.directory, f"{pid}{EVENT_SUFFIX}")
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fd_pid = pid
        lines = "".join(json.dumps(event) + "\n" for event in events)
        os.write(self._fd, lines.encode())

    def _event(self, name: str, start_ns: int, end_ns: int, **args: Any) -> dict[str, Any]:
        info = get_worker_info()
        return {
            "name": name,
            "start_ns": start_ns,
            "end_ns": end_ns,
            "pid": os.getpid(),
            "worker": info.id if info is not None else None,
            "loader": self.loader,
            **args,
        }

    def worker_ready(self) -> None:
        """Called at the end of `worker_init_fn`: the worker's start-up as one range."""
        ready = time.perf_counter_ns()
        started = getattr(multiprocessing.current_process(), "lab_start_ns", None)
        self._write([self._event("worker start", started or ready, ready)])

    def batch_done(self, collate_start: int, end: int) -> None:
        """Called after collation: the batch's fetch, transform and collate ranges."""
        if self.pending is None:  # collated without a traced fetch (not a batched loader)
            return
        fetch_start, transform_start, _, samples = self.pending
        self.pending = None
        number, self.batches = self.batches, self.batches + 1
        stage = "augment" if self.loader == "train" else "transform"
        self._write(
            [
                self._event(name, start, stop, batch=number, samples=samples)
                for name, start, stop in (
                    ("fetch", fetch_start, transform_start),
                    (stage, transform_start, collate_start),
                    ("collate", collate_start, end),
                )
            ]
        )


class TracedDataset(Dataset):
    """A staged dataset whose batches are built stage by stage: every sample's fetch, then
    every sample's transform (the DataLoader asks `__getitems__` for a whole batch), stamped
    for the worker's trace. The same work as `__getitem__` per sample, in another order."""

    def __init__(self, dataset: StagedDataset, trace: WorkerTrace) -> None:
        self.dataset, self.trace = dataset, trace

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, int, int]]:
        fetch_start = time.perf_counter_ns()
        fetched = [self.dataset.fetch(index) for index in indices]
        transform_start = time.perf_counter_ns()
        samples = [self.dataset.transform(item) for item in fetched]
        self.trace.pending = (fetch_start, transform_start, time.perf_counter_ns(), len(samples))
        return samples


class TracedCollate:
    """The loader's collate function, timed; closes the batch's record."""

    def __init__(self, trace: WorkerTrace, collate: Callable[[list], Any] = default_collate):
        self.trace, self.collate = trace, collate

    def __call__(self, samples: list) -> Any:
        start = time.perf_counter_ns()
        batch = self.collate(samples)
        self.trace.batch_done(start, time.perf_counter_ns())
        return batch


class TracedInit:
    """The loader's `worker_init_fn` followed by the worker's start-up record."""

    def __init__(self, trace: WorkerTrace, init: Callable[[int], None] | None) -> None:
        self.trace, self.init = trace, init

    def __call__(self, worker_id: int) -> None:
        if self.init is not None:
            self.init(worker_id)
        self.trace.worker_ready()


def traced_loader_parts(
    dataset: StagedDataset,
    workers: int,
    init: Callable[[int], None] | None,
    loader: str,
) -> dict[str, Any]:
    """DataLoader keyword arguments for `dataset`: as given, unless a profiled pass asked for
    the workers' timeline and the loader has workers (a main-thread loader is in the trace
    already); then the traced dataset, collate function, worker_init_fn and stamped context."""
    directory = worker_trace_dir()
    if directory is None or workers == 0:
        return {"dataset": dataset, "worker_init_fn": init}
    trace = WorkerTrace(directory, loader)
    return {
        "dataset": TracedDataset(dataset, trace),
        "worker_init_fn": TracedInit(trace, init),
        "collate_fn": TracedCollate(trace),
        "multiprocessing_context": stamped_context(),
    }


def read_worker_events(directory: Path) -> list[dict[str, Any]]:
    """Every event the workers wrote into `directory`, in no particular order (a line cut
    short by a worker killed mid-write is skipped)."""
    events = []
    for path in sorted(directory.glob(f"*{EVENT_SUFFIX}")):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events
