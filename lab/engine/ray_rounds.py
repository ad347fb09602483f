"""The Ray engine: rounds fanned out on Ray (`python -m lab.ablate --ray [ADDRESS]`,
docs/scale-out.md; the cluster itself is `lab.engine.cluster`).

Each round is one Ray task that trains that round's variants in its shuffled order on one worker
process and one device (`num_gpus=1` on GPUs, `round_cpus` cores reserved either way), so every
paired comparison stays within one machine and one device; several rounds run at once on
different GPUs or nodes. Rounds on one host are pinned to disjoint cores (`CoreAllocator`), so a
16-worker variant does not take a neighbouring round's cores, and each record says how many
rounds ran on its host during the run and which cores it had.

The decoded data travel once through Ray's object store. Each task streams its records to the
driver as its runs end (a generator task); only the driver writes `results.jsonl`, and it keeps
one record per (variant, round).

A worker or node that dies loses its round in flight. Ray's own retry would replay the whole
generator on whatever node it picks, so tasks run with `max_retries=0` and the driver reruns the
round itself with only the variants it has no record of (exactly what `--resume` does), asking
for the same node first (soft affinity) so the round's pairs stay on one machine when that node
survives; the records name their host, so a round split across hosts by a lost node is visible.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab.engine.cluster import CoreAllocator, check_fits, connect, require_ray, rounds_at_once
from lab.engine.job import Job, Slot
from lab.engine.metadata import device_name
from lab.engine.provenance import code_hash, command_line, git_revision
from lab.engine.rounds import NextRound, Progress, done_runs, rounds_to_run, run_line
from lab.engine.runs import SubsetCache, measure_peak, run_slots
from lab.errors import LabError
from lab.recipe.workload import passes
from lab.records import outputs
from lab.records.jsonl import append_record
from lab.train.data import Cifar
from lab.train.trainer import run_training

ROUND_RETRIES = 3  # reruns of one round after its worker or node died, before the job stops
# The cores this process could use when it started, before a round pinned it to fewer (Ray
# reuses a worker process for later tasks).
PROCESS_CORES: tuple[int, ...] = (
    tuple(sorted(os.sched_getaffinity(0)))
    if hasattr(os, "sched_getaffinity")
    else tuple(range(os.cpu_count() or 1))
)
_warmed_devices: set[str] = set()  # devices this worker process has trained on
_peaks: dict[str, dict[str, Any]] = {}  # the device's peak, measured once per process


# ----------------------------------------------------------------------------- worker side


def _slots(job: Job, keys: list[tuple[str, int, int]]) -> list[Slot]:
    variants = {variant.name: variant for variant in job.variants()}
    return [Slot(variants[name], round_index, position) for name, round_index, position in keys]


def _device_id(device: Any) -> str:
    """The GPU's UUID, else the CPU's name: which device of the host ran it."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_properties(device).uuid)
    return device_name(device)


def round_task(
    job: Job,
    keys: list[tuple[str, int, int]],
    data: Cifar,
    lease: str,
    allocator: Any,
    driver: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """One round inside a Ray task: pin this process to the cores the allocator grants, warm
    the device up once per process, then yield each run's record as it ends."""
    ray = require_ray()
    host = socket.gethostname()
    if code_hash() != driver["code_hash"]:
        theirs, ours = code_hash(), driver["code_hash"]
        raise LabError(f"--ray: {host} runs other code (code {theirs}, the job's {ours})")
    node_id = ray.get_runtime_context().get_node_id()
    cores = ray.get(allocator.acquire.remote(node_id, lease, list(PROCESS_CORES), job.round_cpus))
    try:
        os.sched_setaffinity(0, cores)  # DataLoader workers forked from here inherit it
        torch.set_num_threads(len(cores))
        device = torch.device(job.device)  # Ray set CUDA_VISIBLE_DEVICES to the granted GPU
        if job.device not in _peaks:
            _peaks[job.device] = measure_peak(job, device)
        subsets = SubsetCache(data)
        slots = _slots(job, keys)
        if job.warmup and job.device not in _warmed_devices and not slots[0].warmup:
            # A fresh process pays one-off costs (allocator, kernels) in its first run; the
            # job's recorded warm-up absorbs them in one process only, so warm this one too.
            baseline = job.variants()[0].config
            run_training(baseline, subsets(baseline), device, job.seed)
        _warmed_devices.add(job.device)
        where = {
            "host": host,
            "node_id": node_id,
            "device_id": _device_id(device),
            "cores": cores,
            "worker_pid": os.getpid(),
            "command": driver["command"],
            "git_revision": driver["git_revision"],
        }
        ray.get(allocator.mark.remote(lease))
        progress = Progress(False)
        for _, record in run_slots(job, slots, subsets, device, _peaks[job.device], progress):
            rounds_on_host = ray.get(allocator.peak.remote(lease))
            yield {**record, **where, "rounds_on_host": rounds_on_host}
            ray.get(allocator.mark.remote(lease))
    finally:
        allocator.release.remote(lease)


# ----------------------------------------------------------------------------- driver side


@dataclass
class RoundTask:
    round: int  # the round (its warm-up slot, if any, rides in front)
    slots: list[Slot]
    attempt: int = 0
    node_id: str | None = None  # where its runs were recorded so far

    @property
    def lease(self) -> str:
        return f"{self.round}:{self.attempt}"


def round_groups(todo: list[Slot]) -> list[RoundTask]:
    """The runs to make, one task per round in the schedule's order; the warm-up rides in
    front of the first round's task."""
    tasks: dict[int, RoundTask] = {}
    warmup = [slot for slot in todo if slot.warmup]
    for slot in todo:
        if not slot.warmup:
            tasks.setdefault(slot.round, RoundTask(slot.round, [])).slots.append(slot)
    groups = list(tasks.values())
    if groups and warmup:
        groups[0].slots[:0] = warmup
    return groups


class RoundsOnRay:
    """The driver: submits every round, appends each record as it arrives, reruns a round
    whose worker died with its missing runs."""

    def __init__(self, job: Job, out: Path, data: Cifar, progress: Progress) -> None:
        self.ray = require_ray()
        self.job, self.out, self.progress = job, out, progress
        self.done = done_runs(out)
        self.data_ref = self.ray.put(data)  # once: every task reads the same copy
        self.allocator = self.ray.remote(num_cpus=0)(CoreAllocator).remote()
        self.driver = {"code_hash": code_hash(), "command": command_line()}
        self.driver["git_revision"] = git_revision()
        self.pending: dict[Any, RoundTask] = {}
        self.made = 0
        self.reruns = 0
        self.rounds_at_once: dict[str, int] = {}

    def submit(self, task: RoundTask) -> None:
        options: dict[str, Any] = {
            "num_cpus": self.job.round_cpus,
            "num_gpus": 1 if self.job.device == "cuda" else 0,
            "max_retries": 0,  # the driver reruns a lost round (module docstring)
        }
        if task.node_id:
            # Ray is optional: the module is there whenever a job runs on it.
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(task.node_id, soft=True)
        keys = [(slot.variant.name, slot.round, slot.position) for slot in task.slots]
        remote = self.ray.remote(round_task).options(**options)
        generator = remote.remote(
            self.job, keys, self.data_ref, task.lease, self.allocator, self.driver
        )
        self.pending[generator] = task

    def run(self, tasks: list[RoundTask], limit: int) -> int:
        """Run `tasks`, at most `limit` at once. The cap is the driver's, not only Ray's: Ray
        lends a task's CPUs to others while it blocks in `ray.get`, and was seen running three
        1-CPU rounds at once on a 2-CPU node, two of them pinned to the same core."""
        waiting = list(tasks)
        finished = False
        try:
            while waiting or self.pending:
                while waiting and len(self.pending) < limit:
                    self.submit(waiting.pop(0))
                (generator,), _ = self.ray.wait(list(self.pending), num_returns=1)
                self.step(generator)
            finished = True
        finally:
            if not finished:  # interrupted: stop the rounds still training on the cluster
                for generator in self.pending:
                    self.ray.cancel(generator, force=True)
        return self.made

    def step(self, generator: Any) -> None:
        task = self.pending[generator]
        try:
            ref = next(generator)
        except StopIteration:
            del self.pending[generator]
            return
        try:
            record = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:  # the round's own code failed
            cause = getattr(error, "cause", None)
            raise (cause if isinstance(cause, LabError) else error) from None
        except self.ray.exceptions.RayError as error:  # its worker or node died
            del self.pending[generator]
            self.rerun(task, error)
            return
        self.keep(task, record)

    def keep(self, task: RoundTask, record: dict[str, Any]) -> None:
        key = (record["variant"], record["round"])
        if key in self.done:
            return  # recorded already: never twice
        append_record(self.out / outputs.RESULTS, record)
        self.done.add(key)
        self.made += 1
        task.node_id = record["node_id"]
        host = record["host"]
        self.rounds_at_once[host] = max(self.rounds_at_once.get(host, 0), record["rounds_on_host"])
        slot = next(s for s in task.slots if (s.variant.name, s.round) == key)
        self.progress.runs_done(len(record["measurements"]["epochs"]))
        self.progress.write(
            f"{self.job_line(slot, record)} on {host} ({record['rounds_on_host']} round(s) there)"
        )

    def job_line(self, slot: Slot, record: dict[str, Any]) -> str:
        return run_line(slot, self.job, record)

    def rerun(self, task: RoundTask, error: Exception) -> None:
        self.allocator.release.remote(task.lease)
        missing = [s for s in task.slots if (s.variant.name, s.round) not in self.done]
        if not missing:
            return
        if task.attempt >= ROUND_RETRIES:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise LabError(
                f"--ray: round {task.round + 1} lost its worker {task.attempt + 1} times "
                f"({reason}); finish with --resume {self.out}"
            )
        self.reruns += 1
        self.progress.write(
            f"round {task.round + 1}: its worker died ({type(error).__name__}); rerunning "
            f"its {len(missing)} unrecorded run(s)"
        )
        self.submit(RoundTask(task.round, missing, task.attempt + 1, task.node_id))


def run_rounds_on_ray(
    job: Job,
    out: Path,
    data: Cifar,
    progress: Progress,
    next_round: NextRound,
    decisions: list[dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    """Timed runs as Ray tasks, one per round, in waves: every round the job's rule wants
    (for a fixed job its planned rounds, then replacements of disturbed ones; for an adaptive
    job as many as run at once), then the rule decides again on the records. Returns the runs
    made and the session's account of the cluster (nodes, cores per round, rounds at once per
    host)."""
    cluster = connect("")  # already connected by the CLI; a local Ray otherwise
    check_fits(job, cluster)
    driver = RoundsOnRay(job, out, data, progress)
    capacity = rounds_at_once(job, cluster)
    at_once = capacity if job.adaptive else 1_000_000
    while todo := rounds_to_run(job, out, next_round, decisions, progress, at_once):
        progress.add_total(sum(passes(slot.variant.config) for slot in todo))
        driver.run(round_groups(todo), capacity)
    return driver.made, {
        "address": cluster.address,
        "nodes": [node.host for node in cluster.nodes],
        "round_cpus": job.round_cpus,
        "rounds_at_once": driver.rounds_at_once,
        "reruns": driver.reruns,
    }
