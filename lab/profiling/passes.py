"""Profiled passes: where each variant's time goes, as TensorBoard traces.

Each variant gets one profiled pass (or `--profile-passes N`), separate from its timed runs and
in a child process of its own. In one training pass: the first step (starting the pass and its
workers) and K more steps run unprofiled, timed step by step (the schedule's wait); one warm-up
step; K recorded steps (K = 8, fewer for short passes); then the test evaluation (a fresh loader
pass, so its worker start-up is in it) and, for variants that preprocess, the one-off
preprocessing re-run, each recorded as one more step. The profiler's overhead is the recorded
steps' wall time against the K unprofiled steps of the same pass. Phases are labelled with
`record_function("lab/<phase>")`. Each pass also keeps torch.profiler's per-operator aggregation
of the recorded training steps (`operator_table`) and the cores the training process and its
DataLoader workers used (`lab.profiling.cpuload`, from /proc: the workers are not in a CPU trace).

torch-tb-profiler 0.4.3 only counts events named `enumerate(DataLoader)#...__next__` in the
operator category as DataLoader time, but current PyTorch records them as `user_annotation`,
which it drops, and a main-thread loader records nothing of the kind. After the trace is
written, the lab adds one operator event named `enumerate(DataLoader)#lab.wait_for_batch.__next__`
with the same start and duration as each `lab/data_wait` range. No timing changes: the added
events only repeat ranges the profiler measured, so the Overview's DataLoader share shows the
time the loop spent obtaining its next batch, for every variant.

The DataLoader workers are processes of their own, outside the profiler. A profiled pass asks
them for their own timeline (`lab.train.worker_trace`: start-up, and per batch its fetch,
augment and collate) and merges it into the trace as one row per worker process
(`lab.profiling.worker_rows`), tied to the trace's clock by anchors the main process records.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from lab.profiling.cpuload import Snapshot, cores_used, snapshot
from lab.profiling.worker_rows import add_worker_rows, clock_anchors
from lab.recipe.variant import Variant
from lab.train.clock import CudaClock, PhaseTimes, clock_for
from lab.train.data import Cifar
from lab.train.pipeline import preprocess_both
from lab.train.trainer import Trainer
from lab.train.worker_trace import tracing_workers_to

LABEL_PREFIX = "lab/"
DATALOADER_TWIN = "enumerate(DataLoader)#lab.wait_for_batch.__next__"
COMPUTE_PHASES = ("forward", "backward", "optimizer")
MAX_RECORDED_STEPS = 8
CHART_PHASES = ("data_wait", "h2d", "forward", "backward", "optimizer")
NOT_OPERATORS = (LABEL_PREFIX, "ProfilerStep")  # key_averages names the steps "ProfilerStep*"
# A training step of this ResNet runs ~100 distinct operators; the cap only bounds a record
# if a future network runs many more (the least self time goes first).
MAX_OPERATORS = 400
# Lines the profiler's C++ side prints on every pass that say nothing about this run.
PROFILER_NOISE = (
    "SyncActivityProfilerHandler.cpp",  # USDT: ... profiler_start / profiler_stop
    "was allocated before the profiling started",  # memory profiling of pre-existing blocks
)


def phase_label(name: str) -> record_function:
    return record_function(LABEL_PREFIX + name)


def _read_trace(trace_path: Path) -> dict[str, Any]:
    with gzip.open(trace_path, "rt") as handle:
        return json.load(handle)


def _add_dataloader_twins(trace_path: Path, trace: dict[str, Any]) -> int:
    """Copy every lab/data_wait range as an operator event torch-tb-profiler counts."""
    events = trace["traceEvents"]
    twins = [
        {
            **event,
            "name": DATALOADER_TWIN,
            "cat": "cpu_op",
            "args": {"lab": "copy of lab/data_wait"},
        }
        for event in events
        if event.get("ph") == "X" and event.get("name") == LABEL_PREFIX + "data_wait"
    ]
    events.extend(twins)
    text = json.dumps(trace)  # one C-encoded string: json.dump to a stream is ~10x slower
    with gzip.open(trace_path, "wt", compresslevel=6) as handle:
        handle.write(text)
    return len(twins)


def breakdown_from_trace(trace_path: Path, trace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seconds per category over the recorded training steps, from the trace alone."""
    trace = trace if trace is not None else _read_trace(trace_path)
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    steps = sorted(
        (e for e in events if e["name"].startswith("ProfilerStep#")), key=lambda e: e["ts"]
    )
    labelled = [e for e in events if e["name"].startswith(LABEL_PREFIX)]

    def inside(step: dict[str, Any], name: str) -> float:
        end = step["ts"] + step["dur"]
        return (
            sum(
                e["dur"]
                for e in labelled
                if e["name"] == LABEL_PREFIX + name and step["ts"] <= e["ts"] < end
            )
            / 1e6
        )

    train_steps = [s for s in steps if not inside(s, "eval") and not inside(s, "preprocess")]
    step_s = sum(s["dur"] for s in train_steps) / 1e6
    data_s = sum(inside(s, "data_wait") for s in train_steps)
    compute_s = sum(inside(s, phase) for s in train_steps for phase in COMPUTE_PHASES)
    h2d_s = sum(inside(s, "h2d") for s in train_steps)
    other_s = max(step_s - data_s - compute_s, 0.0)
    phases = {name: sum(inside(s, name) for s in train_steps) for name in CHART_PHASES}
    return {
        "train_steps": len(train_steps),
        "step_s": step_s,
        "data_s": data_s,
        "compute_s": compute_s,
        "other_s": other_s,
        "h2d_s": h2d_s,
        "shares": {
            "data": data_s / step_s if step_s else 0.0,
            "compute": compute_s / step_s if step_s else 0.0,
            "other": other_s / step_s if step_s else 0.0,
        },
        "eval_s": sum(inside(s, "eval") for s in steps),
        "preprocess_s": sum(inside(s, "preprocess") for s in steps),
        # Each labelled phase apart, for the breakdown chart; the rest of a step is
        # step_s - sum(phases_s).
        "phases_s": phases,
    }


def with_device_phases(breakdown: dict[str, Any], times: PhaseTimes) -> dict[str, Any]:
    """The breakdown with its phases timed on the device clock (`lab.train.clock`) over the
    same recorded steps: on CUDA the trace's ranges time kernel launches, the work running
    later, so its forward/backward/optimiser would be launch time and the GPU's time "other".
    The step's own length stays the trace's (its end waits for the device)."""
    phases = {name: times.totals.get(name, 0.0) for name in CHART_PHASES}
    step_s = breakdown["step_s"]
    data_s = phases["data_wait"]
    compute_s = sum(phases[name] for name in COMPUTE_PHASES)
    other_s = max(step_s - data_s - compute_s, 0.0)
    return {
        **breakdown,
        "phase_clock": "cuda events" if isinstance(times.clock, CudaClock) else "cpu clock",
        "data_s": data_s,
        "compute_s": compute_s,
        "other_s": other_s,
        "h2d_s": phases["h2d"],
        "shares": {
            "data": data_s / step_s if step_s else 0.0,
            "compute": compute_s / step_s if step_s else 0.0,
            "other": other_s / step_s if step_s else 0.0,
        },
        "phases_s": phases,
        "trace_phases_s": breakdown["phases_s"],  # the trace's ranges (launch time on CUDA)
    }


def operator_table(events: list[Any], before_us: float, device: bool) -> list[dict[str, Any]]:
    """Per operator over the recorded training steps: calls and self seconds, aggregated as
    `key_averages()` does (one `FunctionEventAvg` per name) but over the events that start
    before `before_us` (the evaluation), so the evaluation and the preprocessing steps are
    left out. The lab's own phase ranges and the profiler's step ranges are not operators."""
    from torch.autograd.profiler_util import FunctionEventAvg

    totals: dict[str, FunctionEventAvg] = defaultdict(FunctionEventAvg)
    for event in events:
        if event.time_range.start < before_us and not event.key.startswith(NOT_OPERATORS):
            totals[event.key].add(event)
    rows = [
        {
            "name": name,
            "calls": average.count,
            "self_s": average.self_cpu_time_total / 1e6,
            "self_device_s": average.self_device_time_total / 1e6 if device else None,
        }
        for name, average in totals.items()
    ]
    rows.sort(key=lambda row: -row["self_s"])
    return rows[:MAX_OPERATORS]


@contextmanager
def quiet_profiler_banner() -> Iterator[None]:
    """The profiler's C++ side prints banner lines to fd 2 on every pass (`PROFILER_NOISE`);
    drop those lines and pass everything else through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in PROFILER_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def recorded_steps(steps_per_pass: int) -> int:
    """Training steps recorded per pass (and as many timed unprofiled for the overhead): up to
    8, fewer when a pass is short. The CPU profiler holds ~40 MB per recorded step (~200 MB
    with shapes and memory), so a whole epoch would not fit a small machine."""
    return max(1, min(MAX_RECORDED_STEPS, (steps_per_pass - 2) // 2))


def _remove_stale_traces(run_dir: Path, keep: frozenset[str]) -> None:
    """Any trace in `run_dir` not named in `keep` is a leftover of an interrupted pass."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob("*.pt.trace.json*"):
        if stale.name not in keep:
            stale.unlink()


def _profiler(
    device: torch.device, k: int, extra_steps: int, run_dir: Path, with_stack: bool
) -> profile:
    """Wait K+1 steps, warm up one, record K training steps and `extra_steps` more."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    return profile(
        activities=activities,
        schedule=schedule(wait=k + 1, warmup=1, active=k + 1 + extra_steps, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(
            # Plain JSON: the handler's own gzip writes the trace line by line (~230,000 small
            # writes); the lab rewrites it anyway (DataLoader twins) and compresses it there,
            # in one write.
            str(run_dir),
            worker_name="lab",
            use_gzip=False,
        ),
        record_shapes=True,
        profile_memory=True,
        with_stack=with_stack,
    )


class StepStamps:
    """A clock reading after every training step, CPU snapshots when the unprofiled steps
    (1..K) and the recorded ones (K+2..2K+1) start and end, keyed by steps ended, and the
    recorded steps' phases on the device clock (`times`)."""

    def __init__(self, trainer: Trainer, profiler: profile, k: int) -> None:
        self.trainer, self.profiler, self.k = trainer, profiler, k
        self.stamps: list[float] = []
        self.cpu: dict[int, Snapshot] = {}
        self.windows = (1, k + 1, k + 2, 2 * k + 2)
        self.times = PhaseTimes(clock_for(trainer.device), phase_label)

    def after_step(self) -> None:
        self.stamps.append(self.trainer.timer.now())  # before the profiler's own step work
        self.times.end_step(keep=self.k + 2 < len(self.stamps) <= 2 * self.k + 2)
        if len(self.stamps) in self.windows:
            self.cpu[len(self.stamps)] = snapshot()
        self.profiler.step()

    def timings(self) -> dict[str, float]:
        k, stamps = self.k, self.stamps
        unprofiled_s = stamps[k] - stamps[0]  # steps 1..k
        profiled_s = stamps[2 * k + 1] - stamps[k + 1]  # steps k+2..2k+1
        return {
            "profiled_steps_s": profiled_s,
            "unprofiled_steps_s": unprofiled_s,
            "profiler_overhead": profiled_s / unprofiled_s - 1,
        }

    def cores(self) -> dict[str, Any]:
        k, cpu = self.k, self.cpu
        return {
            **cores_used(cpu[k + 2], cpu[2 * k + 2]),  # the recorded steps
            "unprofiled": cores_used(cpu[1], cpu[k + 1]),  # steps 1..k, profiler off
        }


def _train_steps(trainer: Trainer, stamps: StepStamps, total: int) -> None:
    """`total` training steps; a short pass (a large batch on a small subset) cannot hold them
    all, so go on into the next pass, as training would."""
    epoch = 1
    while len(stamps.stamps) < total:
        before = len(stamps.stamps)
        trainer.train_epoch(
            epoch, phase=stamps.times.phase, after_step=stamps.after_step, max_steps=total - before
        )
        if len(stamps.stamps) == before:
            raise RuntimeError("a training pass has no steps; nothing to profile")
        epoch += 1


def _record_one_offs(trainer: Trainer, data: Cifar, profiler: profile, preprocesses: bool) -> None:
    """The evaluation, and the loader's whole-set preprocessing when the variant has it, as one
    recorded step each."""
    with phase_label("eval"):
        trainer.evaluate(phase=phase_label)
    profiler.step()
    if preprocesses:
        with phase_label("preprocess"):
            preprocess_both(data.train_images, data.test_images)
        profiler.step()


def _finish_trace(
    run_dir: Path, worker_dir: Path, anchors: list[tuple[int, int]]
) -> tuple[Path, dict[str, Any], int, dict[str, int]]:
    """The trace just written, with the workers' rows and its DataLoader twins added, gzipped;
    (path, content, twins added, worker rows added)."""
    written = max(run_dir.glob("*.pt.trace.json"), key=lambda p: p.stat().st_mtime)
    content = json.loads(written.read_text())
    workers = add_worker_rows(content, worker_dir, anchors, os.getpid())
    trace = written.with_name(written.name + ".gz")
    twins = _add_dataloader_twins(trace, content)
    written.unlink()
    return trace, content, twins, workers


def _training_operators(profiler: profile, device: torch.device) -> list[dict[str, Any]]:
    events = profiler.events()
    eval_start = min(e.time_range.start for e in events if e.name == LABEL_PREFIX + "eval")
    return operator_table(events, eval_start, device.type == "cuda")


def profile_variant(
    variant: Variant,
    data: Cifar,
    device: torch.device,
    seed: int,
    run_dir: Path,
    with_stack: bool = False,
    keep: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One profiled pass of `variant`, in this process; writes its trace into `run_dir`, where
    `keep` names the traces of earlier passes (any other trace there is removed).

    Steps of one training pass: step 0 starts the pass (worker start-up; not timed), steps
    1..K run unprofiled and timed (the schedule's wait), step K+1 is the warm-up, steps
    K+2..2K+1 are recorded; then the evaluation (a fresh loader pass) and, for variants that
    preprocess, the one-off preprocessing are recorded as one step each.
    """
    _remove_stale_traces(run_dir, keep)
    with tempfile.TemporaryDirectory(prefix="lab-workers-") as worker_dir:
        with tracing_workers_to(Path(worker_dir)):  # its pipeline records the workers' timeline
            trainer = Trainer(variant.config, data, device, seed)
        k = recorded_steps(trainer.pipeline.steps_per_epoch)
        # The loader's whole-set preprocessing is re-run and recorded; the device pipeline's (a
        # copy, normalise, pad on the device) is measured in the timed runs only.
        preprocesses = (
            variant.config.preprocessing == "cached" and variant.config.data_path == "loader"
        )
        with (
            quiet_profiler_banner(),
            _profiler(device, k, int(preprocesses), run_dir, with_stack) as profiler,
        ):
            stamps = StepStamps(trainer, profiler, k)
            _train_steps(trainer, stamps, 2 * k + 2)
            anchors = clock_anchors()  # recorded: the evaluation's step has begun
            _record_one_offs(trainer, data, profiler, preprocesses)
        operators = _training_operators(profiler, device)
        trace, content, twins, workers = _finish_trace(run_dir, Path(worker_dir), anchors)
    return {
        "trace": trace.name,
        "recorded_steps": k,
        **stamps.timings(),
        "dataloader_events_added": twins,
        "worker_rows": workers,
        "with_stack": with_stack,
        "breakdown": with_device_phases(breakdown_from_trace(trace, content), stamps.times),
        "operators": operators,
        "cpu": stamps.cores(),
    }


def _profile_child(queue: Any, start_method: str, args: tuple) -> None:
    # A spawned child inherits "spawn" as its default start method, so its DataLoader workers
    # would be spawned (each re-importing torch: ~70 s a pass on 2 cores) while the timed runs
    # fork them. Restore the parent's method so the profiled pass runs the same pipeline.
    multiprocessing.set_start_method(start_method, force=True)
    try:
        queue.put(("ok", profile_variant(*args)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which re-raises
        queue.put(("error", f"{type(error).__name__}: {error}"))


def profile_in_subprocess(
    variant: Variant,
    data: Cifar,
    device: torch.device,
    seed: int,
    run_dir: Path,
    with_stack: bool = False,
    keep: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`profile_variant` in a child process, so the profiler's memory (gigabytes on a CPU)
    is returned to the system when the pass ends and never touches the timed runs' process.
    Spawned, not forked: a fork of a process whose OpenMP thread pool has run (the timed runs)
    hangs at the child's first parallel operator, and CUDA cannot be forked either."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_profile_child,
        args=(
            queue,
            multiprocessing.get_start_method(),
            (variant, data, device, seed, run_dir, with_stack, keep),
        ),
    )
    child.start()
    try:
        status, payload = queue.get()
    finally:
        child.join()
    if status != "ok":
        raise RuntimeError(f"profiled pass of {variant.name} failed: {payload}")
    return payload
