"""CPU time of the training process and of its DataLoader workers over a window of steps, so a
report can say "16 worker processes used 1.1 cores during training on a 2-core machine".

Worker processes are not in a CPU trace (they are other processes) and their CPU time reaches
`getrusage` only once they are reaped, after the pass. While they are alive, Linux exposes each
one's user+system time in /proc/<pid>/stat; the lab reads it directly (no psutil) at the start
and at the end of the window. Elsewhere (no /proc) only the main process is measured and the
workers' figures are None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Snapshot:
    wall: float  # time.perf_counter() when taken
    main_cpu_s: float  # user+system seconds of this process, all threads
    workers_cpu_s: dict[int, float] | None = field(default=None)  # pid -> CPU s; None: no /proc


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat split after the command name (which may hold spaces); None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def worker_cpu_seconds(parent: int) -> dict[int, float] | None:
    """User+system CPU seconds of every live child of `parent` that runs the parent's own
    command line: DataLoader workers are forked, so they share it, while helpers such as
    multiprocessing's resource tracker run another command and are left out."""
    if not (PROC / "self" / "stat").exists():
        return None
    try:
        own_cmdline = (PROC / str(parent) / "cmdline").read_bytes()
    except OSError:
        return None
    ticks = _clock_ticks()
    found: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # After the name: state(0) ppid(1) ... utime(11) stime(12), as in proc(5) minus 3.
        if fields is None or int(fields[1]) != parent:
            continue
        try:
            if (entry / "cmdline").read_bytes() != own_cmdline:
                continue
        except OSError:
            continue
        found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def snapshot() -> Snapshot:
    return Snapshot(time.perf_counter(), time.process_time(), worker_cpu_seconds(os.getpid()))


def machine_cores() -> tuple[int, int]:
    """(cores of the machine, cores this process may run on)."""
    total = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = total
    return total, usable


def cores_used(start: Snapshot, end: Snapshot) -> dict[str, float | int | None]:
    """CPU seconds per second of wall time between two snapshots: cores kept busy. A worker
    seen only at the end counts from zero (started inside the window); one seen only at the
    start (exited inside it) is lost, which never happens to training workers, alive for the
    whole pass."""
    wall = end.wall - start.wall
    total, usable = machine_cores()
    workers_s: float | None = None
    processes: int | None = None
    if start.workers_cpu_s is not None and end.workers_cpu_s is not None:
        workers_s = sum(
            cpu - start.workers_cpu_s.get(pid, 0.0) for pid, cpu in end.workers_cpu_s.items()
        )
        processes = len(end.workers_cpu_s)
    return {
        "wall_s": wall,
        "main_cores": (end.main_cpu_s - start.main_cpu_s) / wall if wall > 0 else None,
        "workers_cores": workers_s / wall if workers_s is not None and wall > 0 else None,
        "worker_processes": processes,
        "machine_cores": total,
        "usable_cores": usable,
    }
