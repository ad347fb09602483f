"""Executing a `Job`: the timed rounds, then the profiled passes, each result appended to the
output folder the moment it exists, so an interrupted job loses at most the run in flight and
`--resume` finishes only what is missing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lab.engine.job import Job, Slot
from lab.engine.metadata import device_name, metadata
from lab.engine.peak import measure_peak_tflops, training_dtype
from lab.engine.plan import plan_entry
from lab.errors import LabError
from lab.profiling.passes import profile_in_subprocess
from lab.recipe.config import Config
from lab.recipe.registry import BASELINE, STEP, Variant
from lab.recipe.workload import passes
from lab.records import outputs
from lab.records.floor import vendor_peak_tflops
from lab.records.jsonl import append_record, read_records, run_record
from lab.records.outputs import tb_run_name
from lab.train.data import Cifar, load_cifar, source_key, subset
from lab.train.precision import resolve_precision
from lab.train.trainer import EpochStats, run_training


class Progress:
    """One bar over every epoch of the job, so its ETA covers the whole job."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=0, unit="epoch", disable=not enabled, dynamic_ncols=True, file=sys.stderr
        )

    def add_total(self, epochs: int) -> None:
        self.bar.total = (self.bar.total or 0) + epochs
        self.bar.refresh()

    def start_run(self, label: str) -> None:
        self.bar.set_description(label)

    def epoch_done(self, stats: EpochStats, epochs: int) -> None:
        self.bar.set_postfix_str(
            f"epoch {stats.epoch}/{epochs} loss {stats.train_loss:.3f} "
            f"acc {stats.test_accuracy:.1%} {stats.images_per_s:.0f} img/s",
            refresh=False,
        )
        self.bar.update(1)

    def runs_done(self, epochs: int) -> None:
        """Runs that ended elsewhere (a Ray task): their epochs at once."""
        self.bar.update(epochs)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def load_job_data(job: Job, progress: bool) -> Cifar:
    """The job's data, refused when the files changed since the job was planned."""
    assert job.data is not None, "a job that trains has a data source"
    path = Path(job.data.path)
    if not path.exists():
        raise LabError(f"{path}: the job's data is gone (it was planned on this folder)")
    _, fingerprint = source_key(path)
    if fingerprint != job.data.fingerprint:
        raise LabError(
            f"{path}: the job's data changed since it started (files added, removed or "
            "modified); start a new job instead of mixing runs"
        )
    return load_cifar(path, progress=progress)


class SubsetCache:
    """Each distinct subset of the decoded data is built once per process."""

    def __init__(self, data: Cifar) -> None:
        self.data: Cifar = data
        self.subsets: dict[tuple, Cifar] = {}

    def __call__(self, config: Config) -> Cifar:
        key = (config.train_images, config.test_images, config.subset_seed)
        if key not in self.subsets:
            self.subsets[key] = subset(self.data, *key)
        return self.subsets[key]


def measure_peak(job: Job, device: torch.device) -> dict[str, Any]:
    """The device's peak for the floor: measured matmul throughput in the training dtype, the
    vendor's figure for known GPUs, and which one the floor uses (`--peak-tflops` wins)."""
    dtype = training_dtype(device, resolve_precision(job.base_config(), device))
    measured = measure_peak_tflops(device, dtype)
    vendor = vendor_peak_tflops(device_name(device))
    if job.peak_tflops:
        used, source = job.peak_tflops, "--peak-tflops"
    elif vendor:
        used, source = vendor, "vendor"
    else:
        used, source = measured, "measured"
    return {
        "measured_tflops": measured,
        "vendor_tflops": vendor,
        "override_tflops": job.peak_tflops,
        "used_tflops": used,
        "source": source,
        "dtype": str(dtype).removeprefix("torch."),
    }


def done_runs(out: Path) -> set[tuple[str, int]]:
    """(variant, round) of every run already recorded, the warm-up as round -1."""
    path = out / outputs.RESULTS
    return {(r["variant"], r["round"]) for r in read_records(path)} if path.exists() else set()


def _label(slot: Slot, job: Job) -> str:
    if slot.warmup:
        when = "warm-up"
    elif job.adaptive:
        when = f"round {slot.round + 1} (adaptive)"
    elif slot.round < job.rounds:
        when = f"round {slot.round + 1}/{job.rounds}"
    else:
        when = f"round {slot.round + 1} (replacing a disturbed round)"
    return f"{slot.variant.name} {when}"


def _record(job: Job, slot: Slot, seed: int, data: Cifar, m: dict, peak: dict) -> dict:
    variant = slot.variant
    return run_record(
        job=job.to_dict(),
        slot={"round": slot.round, "position": slot.position, "seed": seed},
        variant={
            "name": variant.name,
            "role": variant.role,
            "steps": variant.steps,
            "config": variant.config.to_dict(),
        },
        plan=plan_entry(variant),
        data={
            "source": data.source,
            "fingerprint": data.fingerprint,
            "train_images": len(data.train_labels),
            "test_images": len(data.test_labels),
            "classes": list(data.classes),
        },
        measurements=m,
        peak=peak,
        meta=metadata(torch.device(job.device)),
    )


def run_slots(
    job: Job,
    slots: list[Slot],
    subsets: SubsetCache,
    device: torch.device,
    peak: dict,
    progress: Progress,
) -> Iterator[tuple[Slot, dict]]:
    """Train `slots` in the given order on this process and this device, yielding each run's
    slot and record the moment the run ends. The one way a run is made: locally, every slot of
    the job in turn; on Ray (`lab.engine.ray_rounds`), one round's slots inside its task."""
    for slot in slots:
        data = subsets(slot.variant.config)
        seed = job.seed + max(slot.round, 0)
        progress.start_run(_label(slot, job))
        config = slot.variant.config
        result = run_training(config, data, device, seed, on_epoch=progress.epoch_done)
        m = result.to_dict(config.target_accuracy)
        yield slot, _record(job, slot, seed, data, m, peak)


def run_line(slot: Slot, job: Job, record: dict) -> str:
    """The line printed when a run ends."""
    m = record["measurements"]
    return (
        f"{_label(slot, job)}: {m['total_s']:.2f} s (train {m['train_s']:.2f} s, "
        f"eval {m['eval_s']:.2f} s), test accuracy {m['final_test_accuracy']:.2%}"
    )


def todo_slots(job: Job, out: Path, rounds: int | None = None) -> list[Slot]:
    """Every run of the warm-up and the first `rounds` rounds (default: the planned ones) not
    yet recorded, in the schedule's order."""
    done = done_runs(out)
    todo = [s for s in job.schedule(rounds) if (s.variant.name, s.round) not in done]
    return [] if all(slot.warmup for slot in todo) else todo  # a lone warm-up measures nothing


@dataclass(frozen=True)
class RoundPlan:
    """The answer of a job's rounds rule (`lab.analysis.rounds`, handed in by the CLI: the
    engine knows nothing of statistics) after a round: stop or go on, how many more rounds
    the rule wants at least (what a `--ray` job submits at once, up to what fits), the lines
    to print, and what the session record keeps of the decision."""

    stop: bool
    wanted: int = 1
    lines: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)


# The records of the job so far -> whether to run another round.
NextRound = Callable[[list[dict[str, Any]]], RoundPlan]


def recorded(out: Path) -> list[dict[str, Any]]:
    path = out / outputs.RESULTS
    return read_records(path) if path.exists() else []


def unfinished_rounds(job: Job, records: list[dict[str, Any]]) -> list[int]:
    """The rounds started but not finished (an interrupted job), in order."""
    done = {(r["variant"], r["round"]) for r in records}
    started = sorted({r["round"] for r in records if r["round"] >= 0})
    return [
        index
        for index in started
        if any((s.variant.name, s.round) not in done for s in job.round_slots(index))
    ]


def slots_of_rounds(job: Job, records: list[dict[str, Any]], rounds: list[int]) -> list[Slot]:
    """The unrecorded runs of `rounds`, after the warm-up if it has not run."""
    done = {(r["variant"], r["round"]) for r in records}
    slots = job.warmup_slots() + [s for index in rounds for s in job.round_slots(index)]
    return [s for s in slots if (s.variant.name, s.round) not in done]


def rounds_to_run(
    job: Job,
    out: Path,
    next_round: NextRound,
    decisions: list[dict[str, Any]],
    progress: Progress,
    at_once: int = 1,
) -> list[Slot]:
    """The runs to make next: the unfinished rounds of an interrupted job, whatever the rule
    says; else, unless `next_round` says stop, the next rounds (as many as the rule wants, up
    to `at_once`). Empty when the job's rounds are over."""
    records = recorded(out)
    rounds = unfinished_rounds(job, records)
    if not rounds:
        plan = next_round(records)
        decisions.append(plan.record)
        for line in plan.lines:
            progress.write(line)
        if plan.stop:
            return []
        first = 1 + max((r["round"] for r in records), default=-1)
        rounds = list(range(first, first + max(1, min(plan.wanted, at_once))))
    return slots_of_rounds(job, records, rounds)


def run_timed(
    job: Job,
    out: Path,
    subsets: SubsetCache,
    progress: Progress,
    peak: dict,
    next_round: NextRound,
    decisions: list[dict[str, Any]],
) -> int:
    """Round after round, each run appended as it ends, until `next_round` says stop (an
    interrupted round is finished first); each decision is appended to `decisions`. Returns
    the runs made."""
    device = torch.device(job.device)
    made = 0
    while todo := rounds_to_run(job, out, next_round, decisions, progress):
        progress.add_total(sum(passes(slot.variant.config) for slot in todo))
        for slot, record in run_slots(job, todo, subsets, device, peak, progress):
            append_record(out / outputs.RESULTS, record)
            progress.write(run_line(slot, job, record))
            made += 1
    return made


def profiled_passes(out: Path) -> dict[tuple[str, int], str]:
    """(variant, pass) -> trace file of every profiled pass recorded."""
    path = out / outputs.PROFILE
    records = read_records(path) if path.exists() else []
    return {(r["variant"], r["pass"]): r["trace"] for r in records}


def profile_targets(job: Job) -> list[Variant]:
    """The cumulative chain: the control and leave-one-out variants repeat its configs."""
    return [v for v in job.variants() if v.role in (BASELINE, STEP)]


def run_profiles(job: Job, out: Path, subsets: SubsetCache, progress: Progress) -> int:
    """Every profiled pass not yet recorded, pass 0 of every cumulative variant in a shuffled
    order, then pass 1, ...; each appended to profile.jsonl as it ends."""
    device = torch.device(job.device)
    targets = profile_targets(job)
    index_of = {v.name: i for i, v in enumerate(targets)}
    done = profiled_passes(out)
    todo = [(p, v) for p, v in job.profile_order(targets) if (v.name, p) not in done]
    for pass_index, variant in todo:
        label = f"pass {pass_index + 1}/{job.profile_passes}" if job.profile_passes > 1 else "pass"
        progress.start_run(f"{variant.name} profiled {label}")
        run_name = tb_run_name(index_of[variant.name], variant.name)
        kept = frozenset(trace for (name, _), trace in done.items() if name == variant.name)
        result = profile_in_subprocess(
            variant,
            subsets(variant.config),
            device,
            job.seed,
            out / outputs.TENSORBOARD / run_name,
            with_stack=job.with_stack,
            keep=kept,
        )
        done[(variant.name, pass_index)] = result["trace"]
        append_record(
            out / outputs.PROFILE,
            {
                **metadata(device),
                "preset": job.preset,
                "variant": variant.name,
                "role": variant.role,
                "steps": list(variant.steps),
                "tb_run": run_name,
                "pass": pass_index,
                "config": variant.config.to_dict(),
                **result,
            },
        )
        shares = result["breakdown"]["shares"]
        progress.write(
            f"{variant.name} profiled {label}: data {shares['data']:.0%}, compute "
            f"{shares['compute']:.0%}, other {shares['other']:.0%} of step time "
            f"(trace in {out / outputs.TENSORBOARD / run_name})"
        )
    return len(todo)


def driver_device(job: Job) -> torch.device:
    """The device of this process: the job's, except a Ray driver without the job's GPU."""
    if job.device == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")  # only allowed with --ray: the rounds run on the workers
    return torch.device(job.device)


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
            from lab.engine.ray_rounds import run_rounds_on_ray

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
