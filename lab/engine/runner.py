"""The local engine: a job's timed rounds on this process and this device, then the profiled
passes (of every job, a Ray one's too), each result appended to the output folder the moment it
exists, so an interrupted job loses at most the run in flight and `--resume` finishes only what
is missing. The rounds' bookkeeping is `lab.engine.rounds`, making a run `lab.engine.runs`;
`lab.engine.session` picks this engine or the Ray one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lab.engine.job import Job
from lab.engine.metadata import metadata
from lab.engine.rounds import NextRound, Progress, rounds_to_run, run_line
from lab.engine.runs import SubsetCache, run_slots
from lab.profiling.passes import profile_in_subprocess
from lab.recipe.variant import Variant
from lab.recipe.vocabulary import BASELINE, STEP
from lab.recipe.workload import passes
from lab.records import outputs
from lab.records.jsonl import append_record, read_records
from lab.records.outputs import tb_run_name


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
