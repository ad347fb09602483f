"""A job: what to run, in which order, on which data. Stored in `plan.json` when it starts, so
`--resume` rebuilds exactly the same job and refuses anything that would change it.

A job is a list of rounds (Abedi & Brecht's randomized multiple interleaved trials): after one
discarded warm-up run of the baseline, every round runs every variant once, in an order
shuffled per round from the recorded `order_seed`. Machine drift then falls on every variant
alike, and the paired comparison within a round (`lab.analysis.stats`) removes most of it. A
job of more than one variant also runs a control, a second copy of the baseline, in every round: its
comparison with the baseline is the noise floor of this very job.

The job's fields and its storage in plan.json are `lab.records.plan.JobSpec`'s; this module adds
what running it needs, and knows nothing of training: `lab.engine.runner` executes a job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import ablations  # noqa: F401  (registers the steps a job's variants apply, on Ray workers too)
from lab.errors import LabError
from lab.recipe.article import series_facts
from lab.recipe.config import Config, apply_overrides
from lab.recipe.presets import get_preset
from lab.recipe.registry import get_steps
from lab.recipe.variant import (
    Variant,
    apply_steps,
    control_variant,
    cumulative_variants,
    leave_one_out_variants,
)
from lab.records import outputs
from lab.records.plan import JobSpec, read_resumable_plan, write_plan

# Seeds the profiled passes' shuffles with three words ([order_seed, 1, pass]), apart from the
# rounds' two-word seeds, so the two never share a shuffle.
PROFILE_STREAM = 1


@dataclass(frozen=True)
class Slot:
    """One run of the schedule."""

    variant: Variant
    round: int  # 0-based; -1 for the warm-up
    position: int  # place in its round's shuffled order (0 = ran first)

    @property
    def warmup(self) -> bool:
        return self.round < 0


@dataclass(frozen=True)
class Job(JobSpec):
    """The job of plan.json (`lab.records.plan.JobSpec`, its fields and storage) with what the
    runner asks of it: the base config, the variants, the rounds' shuffled orders."""

    def base_config(self) -> Config:
        """The baseline's recipe: the preset's, the `--set` overrides, then the `--from` start."""
        preset = apply_overrides(get_preset(self.preset).config, list(self.overrides))
        return apply_steps(preset, get_steps(list(self.start))) if self.start else preset

    def cumulative(self) -> list[Variant]:
        """baseline, +step1, ...: the chain whose neighbours the report compares."""
        steps = get_steps(list(self.steps)) if self.steps else []
        return cumulative_variants(self.base_config(), steps, self.start)

    def variants(self) -> list[Variant]:
        """Every variant the job runs: the chain, the control, the leave-one-out variants."""
        chain = self.cumulative()
        extra = []
        if self.control and len(chain) > 1:
            extra.append(control_variant(chain[0].config, self.start))
        if self.leave_one_out and len(chain) > 2:
            steps = get_steps(list(self.steps))
            extra.extend(leave_one_out_variants(chain[0].config, steps, self.start))
        return chain + extra

    def round_order(self, round_index: int, count: int) -> list[int]:
        """The shuffled order of `count` variants in a round, reproducible from the seed."""
        rng = np.random.default_rng([self.order_seed, round_index])
        return [int(i) for i in rng.permutation(count)]

    def warmup_slots(self) -> list[Slot]:
        """The discarded warm-up run, when the job has one."""
        variants = self.variants()
        return [Slot(variants[0], -1, 0)] if self.warmup and len(variants) > 1 else []

    def round_slots(self, round_index: int) -> list[Slot]:
        """Every run of round `round_index`, in its shuffled order. Any index has its order,
        so rounds added after the planned ones (a disturbed round's replacement, an adaptive
        job's next round) are as reproducible as the planned ones."""
        variants = self.variants()
        order = self.round_order(round_index, len(variants))
        return [
            Slot(variants[index], round_index, position) for position, index in enumerate(order)
        ]

    def schedule(self, rounds: int | None = None) -> list[Slot]:
        """The warm-up and the first `rounds` rounds (default: the job's planned `rounds`)."""
        slots = self.warmup_slots()
        for round_index in range(self.rounds if rounds is None else rounds):
            slots.extend(self.round_slots(round_index))
        return slots

    def profile_order(self, targets: list[Variant]) -> list[tuple[int, Variant]]:
        """(pass, variant) for every profiled pass: pass 0 of every target in a shuffled
        order, then pass 1, ..., as the timed rounds interleave, so drift during the passes
        falls on every variant alike. Reproducible from `order_seed` (a stream of its own:
        the rounds' shuffles are not reused)."""
        order = []
        for pass_index in range(self.profile_passes):
            rng = np.random.default_rng([self.order_seed, PROFILE_STREAM, pass_index])
            order.extend((pass_index, targets[int(i)]) for i in rng.permutation(len(targets)))
        return order

    # ------------------------------------------------------------------------- storage

    def save(self, out: Path, code_hash: str) -> None:
        """plan.json: the job, its variants' configs, and what its report will state about each
        step and the article, frozen now so that a report rebuilt by later code says the same."""
        # The start's steps too: the report states where the chain began (the article's
        # figure for that point included).
        steps = get_steps([*self.start, *self.steps])
        write_plan(
            out,
            self,
            code_hash,
            variants={v.name: v.config.to_dict() for v in self.variants()},
            step_facts={step.name: step.facts() for step in steps},
            article=series_facts(),
        )

    @classmethod
    def load(cls, out: Path, code_hash: str) -> Job:
        """The job stored in `out`, refused when today's code or configs differ from it."""
        plan = read_resumable_plan(out)
        try:
            job = cls.from_dict(plan["job"])
        except (KeyError, TypeError):
            raise LabError(f"--resume {out / outputs.PLAN}: unreadable plan") from None
        if plan.get("code_hash") != code_hash:
            raise LabError(
                f"--resume {out}: the code changed since the job started "
                f"(code {plan.get('code_hash')} then, {code_hash} now); "
                "start a new job instead of mixing runs"
            )
        if {v.name: v.config.to_dict() for v in job.variants()} != plan["variants"]:
            raise LabError(
                f"--resume {out}: the variants' configs differ from the stored plan; "
                "start a new job instead of mixing runs"
            )
        return job

    def conflicts(self, requested: dict[str, Any]) -> list[str]:
        """Fields of `requested` (flags given with `--resume`) that differ from this job."""
        mine = asdict(self)  # every field (plan.json's form omits an empty start)
        return [
            f"{name}={value!r} (the job has {mine[name]!r})"
            for name, value in requested.items()
            if mine[name] != value
        ]
