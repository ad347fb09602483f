"""A job's session, from the CLI's start to its end: the timed rounds on this process
(`lab.engine.runner`) or as Ray tasks (`lab.engine.ray_rounds`) until the job's rounds rule says
stop, then the profiled passes, and one record in `sessions.jsonl` however the session ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.engine.job import Job
from lab.engine.metadata import metadata
from lab.engine.ray_rounds import run_rounds_on_ray
from lab.engine.rounds import NextRound, Progress
from lab.engine.runner import run_profiles, run_timed
from lab.engine.runs import SubsetCache, driver_device, measure_peak
from lab.records import outputs
from lab.records.jsonl import append_record
from lab.train.data import Cifar


def run(
    job: Job,
    out: Path,
    data: Cifar,
    progress_enabled: bool,
    started: float,
    next_round: NextRound,
) -> int:
    """Timed rounds (here, or as Ray tasks for a `--ray` job) until `next_round` says stop,
    then the profiled passes; a session record (wall time, what ran, each decision on the
    rounds, whether it finished) is appended however the session ends. Returns the timed runs
    made."""
    device = driver_device(job)
    progress = Progress(progress_enabled)
    session: dict[str, Any] = {
        **metadata(device),
        "source": data.source,
        "decode_s": data.decode_s,
        "load_s": data.load_s,
        "cache_hit": data.cache_hit,
        "timed_runs": 0,
        "profiled_passes": 0,
        "finished": False,
        "decisions": [],  # the rounds rule's, after every round (lab.analysis.rounds)
    }
    try:
        subsets = SubsetCache(data)
        if job.ray:
            session["timed_runs"], session["ray"] = run_rounds_on_ray(
                job, out, data, progress, next_round, session["decisions"]
            )
        else:
            peak = measure_peak(job, device)
            session["timed_runs"] = run_timed(
                job, out, subsets, progress, peak, next_round, session["decisions"]
            )
        if job.profile:
            session["profiled_passes"] = run_profiles(job, out, subsets, progress)
        session["finished"] = True
    finally:
        progress.close()
        session["wall_s"] = time.perf_counter() - started
        append_record(out / outputs.SESSIONS, session)
    return session["timed_runs"]
