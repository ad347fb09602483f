"""Profiled passes: where each variant's time goes, as TensorBoard traces.

Each variant gets one profiled pass, separate from its timed runs: two training steps (the
profiler's wait and warm-up steps), then a fresh pass over the training loader (so worker
start-up is in it, as in every timed epoch) recorded in full, then the test evaluation as one
more recorded step, and, for variants that preprocess, the one-off preprocessing re-run as a
last recorded step. Phases are labelled with `record_function("lab/<phase>")`.

torch-tb-profiler 0.4.3 only counts events named `enumerate(DataLoader)#...__next__` in the
operator category as DataLoader time, but current PyTorch records them as `user_annotation`,
which it drops, and a main-thread loader records nothing of the kind. After the trace is
written, the lab adds one operator event named `enumerate(DataLoader)#lab.wait_for_batch.__next__`
with the same start and duration as each `lab/data_wait` range. No timing changes: the added
events only repeat ranges the profiler measured, so the Overview's DataLoader share shows the
time the loop spent obtaining its next batch, for every variant.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from lab.data import Cifar
from lab.pipeline import PAD, preprocess
from lab.registry import Variant
from lab.trainer import Trainer

LABEL_PREFIX = "lab/"
DATALOADER_TWIN = "enumerate(DataLoader)#lab.wait_for_batch.__next__"
COMPUTE_PHASES = ("forward", "backward", "optimizer")
WAIT_STEPS, WARMUP_STEPS = 1, 1
# Lines the profiler's C++ side prints on every pass that say nothing about this run.
PROFILER_NOISE = (
    "SyncActivityProfilerHandler.cpp",  # USDT: ... profiler_start / profiler_stop
    "was allocated before the profiling started",  # memory profiling of pre-existing blocks
)


def phase_label(name: str) -> record_function:
    return record_function(LABEL_PREFIX + name)


def tb_run_name(index: int, variant_name: str) -> str:
    """Folder of a variant under tb/: ordered, and without the '+' of variant names."""
    return f"{index:02d}-{variant_name.lstrip('+')}"


def _add_dataloader_twins(trace_path: Path) -> int:
    """Copy every lab/data_wait range as an operator event torch-tb-profiler counts."""
    with gzip.open(trace_path, "rt") as handle:
        trace = json.load(handle)
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
    with gzip.open(trace_path, "wt") as handle:
        json.dump(trace, handle)
    return len(twins)


def breakdown_from_trace(trace_path: Path) -> dict[str, Any]:
    """Seconds per category over the recorded training steps, from the trace alone."""
    with gzip.open(trace_path, "rt") as handle:
        events = [e for e in json.load(handle)["traceEvents"] if e.get("ph") == "X"]
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
    }


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


def profile_variant(
    variant: Variant,
    data: Cifar,
    device: torch.device,
    seed: int,
    run_dir: Path,
    with_stack: bool = False,
) -> dict[str, Any]:
    """One profiled pass of `variant`; writes its trace into `run_dir` and returns the
    measured breakdown and the wall time of the recorded pass (for the overhead)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(variant.config, data, device, seed)
    steps = len(trainer.pipeline.train_loader)
    preprocesses = variant.config.preprocessing == "cached"
    active = steps + 1 + (1 if preprocesses else 0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with (
        quiet_profiler_banner(),
        profile(
            activities=activities,
            schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=active, repeat=1),
            on_trace_ready=torch.profiler.tensorboard_trace_handler(
                str(run_dir), worker_name="lab", use_gzip=True
            ),
            record_shapes=True,
            profile_memory=True,
            with_stack=with_stack,
        ) as profiler,
    ):
        # Wait and warm-up steps: the start of a pass, abandoned (its workers are shut down).
        trainer.train_epoch(0, after_step=profiler.step, max_steps=WAIT_STEPS + WARMUP_STEPS)
        start = trainer.timer.now()
        train_s, _, _ = trainer.train_epoch(1, phase=phase_label, after_step=profiler.step)
        with phase_label("eval"):
            eval_s, _, _ = trainer.evaluate(phase=phase_label)
        profiler.step()
        recorded_s = trainer.timer.now() - start
        if preprocesses:
            with phase_label("preprocess"):
                preprocess(data.train_images, PAD)
                preprocess(data.test_images, 0)
            profiler.step()
    traces = sorted(run_dir.glob("*.pt.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    trace = traces[-1]
    twins = _add_dataloader_twins(trace)
    return {
        "trace": trace.name,
        "profiled_epoch_s": recorded_s,  # the recorded pass + its evaluation, profiler on
        "profiled_train_s": train_s,
        "profiled_eval_s": eval_s,
        "dataloader_events_added": twins,
        "with_stack": with_stack,
        "breakdown": breakdown_from_trace(trace),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
