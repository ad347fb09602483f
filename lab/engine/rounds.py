"""The rounds of a job, shared by its two engines, the local one (`lab.engine.runner`) and the
Ray one (`lab.engine.ray_rounds`): which runs are recorded, which rounds come next (the
unfinished rounds of an interrupted job, else what the job's rounds rule asks for), the line
printed for each run, and the progress bar. No torch: `python -m lab.ablate` builds its rounds
rule from `RoundPlan` before anything trains; making a run is `lab.engine.runs`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from lab.engine.job import Job, Slot
from lab.records import outputs
from lab.records.jsonl import read_records

if TYPE_CHECKING:  # a type only: importing the trainer would bring torch in
    from lab.train.trainer import EpochStats


class Progress:
    """One bar over every epoch of the job, so its ETA covers the whole job."""

    def __init__(self, enabled: bool) -> None:
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


def done_runs(out: Path) -> set[tuple[str, int]]:
    """(variant, round) of every run already recorded, the warm-up as round -1."""
    path = out / outputs.RESULTS
    return {(r["variant"], r["round"]) for r in read_records(path)} if path.exists() else set()


def run_label(slot: Slot, job: Job) -> str:
    if slot.warmup:
        when = "warm-up"
    elif job.adaptive:
        when = f"round {slot.round + 1} (adaptive)"
    elif slot.round < job.rounds:
        when = f"round {slot.round + 1}/{job.rounds}"
    else:
        when = f"round {slot.round + 1} (replacing a disturbed round)"
    return f"{slot.variant.name} {when}"


def run_line(slot: Slot, job: Job, record: dict) -> str:
    """The line printed when a run ends."""
    m = record["measurements"]
    return (
        f"{run_label(slot, job)}: {m['total_s']:.2f} s (train {m['train_s']:.2f} s, "
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
    """Every run recorded so far in `out`."""
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
