"""The DataLoader workers' rows of a profiled pass's trace.

The workers record their start-up and each batch's fetch, augment (transform) and collate as
`perf_counter_ns` ranges (`lab.train.worker_trace`); the trace's "ts" is in microseconds on the
profiler's own clock (kineto's: wall-clock based, relative to the trace's
`baseTimeNanoseconds`). The two clocks are tied by anchors: the main process opens
`record_function("lab/clock_anchor")` a few times while the profiler records, reading
`perf_counter_ns` just before and just after entering it, and the trace holds each anchor's
"ts". The anchor with the narrowest bracket gives the offset (its error is at most half that
bracket, microseconds, against batches of milliseconds).

Each worker becomes a process of its own in the trace (its pid, one thread), named
"DataLoader worker <id> (<loader> pass <n>)", with complete events ("ph": "X") in the
`python_function` category: torch-tb-profiler keeps that category (its trace view shows every
event anyway) but counts it in neither the Overview nor the Operator view, so the main
process's step breakdown there is the profiler's alone; `user_annotation` would be dropped by
its parser, and `cpu_op` would count the workers' ranges as the main process's CPU time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from torch.profiler import record_function

from lab.train.worker_trace import read_worker_events

ANCHOR = "lab/clock_anchor"
ANCHORS = 3  # the first entry of a record_function can be slow; the narrowest bracket wins
WORKER_CATEGORY = "python_function"
WORKER_EVENT_NAMES = ("worker start", "fetch", "augment", "transform", "collate")
RECORD_ARGS = ("loader", "worker", "batch", "samples")  # kept as the events' args


def clock_anchors(count: int = ANCHORS) -> list[tuple[int, int]]:
    """Open the anchor `count` times inside the profiler's recorded window; each one's
    (perf_counter_ns before entering, after entering)."""
    brackets = []
    for _ in range(count):
        before = time.perf_counter_ns()
        with record_function(ANCHOR):
            after = time.perf_counter_ns()
        brackets.append((before, after))
    return brackets


def trace_offset_us(trace: dict[str, Any], anchors: list[tuple[int, int]], pid: int) -> float:
    """Trace "ts" minus perf_counter microseconds, from the anchor with the narrowest bracket."""
    recorded = sorted(
        event["ts"]
        for event in trace["traceEvents"]
        if event.get("ph") == "X" and event.get("name") == ANCHOR and event.get("pid") == pid
    )
    if len(recorded) != len(anchors):
        raise RuntimeError(
            f"the trace holds {len(recorded)} {ANCHOR} events of process {pid}, "
            f"{len(anchors)} were opened: the workers' clock cannot be tied to the trace's"
        )
    ts, (before, after) = min(zip(recorded, anchors, strict=True), key=lambda p: p[1][1] - p[1][0])
    return ts - (before + after) / 2 / 1000


def _process_names(records: list[dict[str, Any]]) -> dict[int, tuple[str, float]]:
    """pid -> (display name, start ns): the n-th process a loader starts with worker id w is
    worker w of that loader's pass n (every pass over a loader starts its workers afresh)."""
    first: dict[int, dict[str, Any]] = {}
    for record in records:
        if record["pid"] not in first or record["start_ns"] < first[record["pid"]]["start_ns"]:
            first[record["pid"]] = record
    seen: dict[tuple[str, Any], int] = defaultdict(int)
    names = {}
    for pid, record in sorted(first.items(), key=lambda item: item[1]["start_ns"]):
        key = (record["loader"], record["worker"])
        seen[key] += 1
        name = f"DataLoader worker {record['worker']} ({record['loader']} pass {seen[key]})"
        names[pid] = (name, record["start_ns"])
    return names


def worker_events(
    records: list[dict[str, Any]], offset_us: float, main_pid: int
) -> list[dict[str, Any]]:
    """The trace events for the workers' records: one complete event per record and, per
    worker process, its name, its thread's name and a sort index that lists the workers
    after the main process, in the order they started."""
    events: list[dict[str, Any]] = []
    names = _process_names(records)
    for rank, (pid, (name, start_ns)) in enumerate(names.items(), start=1):
        ts = start_ns / 1000 + offset_us
        for kind, args in (
            ("process_name", {"name": name}),
            ("process_sort_index", {"sort_index": main_pid + rank}),
            ("thread_name", {"name": name}),
        ):
            events.append({"ph": "M", "name": kind, "pid": pid, "tid": pid, "ts": ts, "args": args})
    for record in records:
        args = {key: record[key] for key in RECORD_ARGS if key in record}
        events.append(
            {
                "ph": "X",
                "cat": WORKER_CATEGORY,
                "name": record["name"],
                "pid": record["pid"],
                "tid": record["pid"],
                "ts": record["start_ns"] / 1000 + offset_us,
                "dur": (record["end_ns"] - record["start_ns"]) / 1000,
                "args": args,
            }
        )
    return events


def add_worker_rows(
    trace: dict[str, Any], directory: Path, anchors: list[tuple[int, int]], main_pid: int
) -> dict[str, int]:
    """Merge what the workers wrote into `directory` into `trace` (in place); how many worker
    processes and events were added."""
    records = read_worker_events(directory)
    if not records:
        return {"processes": 0, "events": 0}
    offset_us = trace_offset_us(trace, anchors, main_pid)
    trace["traceEvents"].extend(worker_events(records, offset_us, main_pid))
    return {"processes": len({record["pid"] for record in records}), "events": len(records)}
