"""A job: what to run, in which order, on which data. Stored in `plan.json` when it starts, so
`--resume` rebuilds exactly the same job and refuses anything that would change it.

A job is a list of rounds (Abedi & Brecht's randomized multiple interleaved trials): after one
discarded warm-up run of the baseline, every round runs every variant once, in an order
shuffled per round from the recorded `order_seed`. Machine drift then falls on every variant
alike, and the paired comparison within a round (`lab.analysis.stats`) removes most of it. A
job of more than one variant also runs a control, a second copy of the baseline, in every round: its
comparison with the baseline is the noise floor of this very job.

This module is plain data and knows nothing of training; `lab.engine.runner` executes a job.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import ablations  # noqa: F401  (registers the steps a job's variants apply, on Ray workers too)
from lab.engine import outputs
from lab.engine.records import PLAN_SCHEMA_VERSION
from lab.errors import LabError
from lab.recipe.article import series_facts
from lab.recipe.config import Config, apply_overrides
from lab.recipe.presets import get_preset
from lab.recipe.registry import get_steps
from lab.recipe.variant import (
    Variant,
    control_variant,
    cumulative_variants,
    leave_one_out_variants,
)

# Seeds the profiled passes' shuffles with three words ([order_seed, 1, pass]), apart from the
# rounds' two-word seeds, so the two never share a shuffle.
PROFILE_STREAM = 1


@dataclass(frozen=True)
class DataSource:
    path: str  # the resolved data folder
    fingerprint: str  # hash of its files' paths, sizes and mtimes (the decoded cache's key)


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
class Job:
    preset: str  # name of the preset the variants start from
    steps: tuple[str, ...]  # steps applied cumulatively, in registry order
    rounds: int  # rounds; each runs every variant once
    seed: int  # training seed of round 0; round i uses seed + i (all variants alike)
    order_seed: int  # seed of the per-round shuffles (recorded so the order is reproducible)
    device: str  # "cpu" or "cuda"
    overrides: tuple[str, ...] = ()  # `--set key=value` assignments, in order
    warmup: bool = True  # one discarded baseline run before round 0
    control: bool = True  # a second copy of the baseline in every round (jobs of 2+ variants)
    leave_one_out: bool = False  # also every variant with all steps but one
    profile: bool = True  # profiled passes of each cumulative variant after the timed rounds
    with_stack: bool = False  # Python stacks in the traces
    profile_passes: int = 1  # profiled passes per cumulative variant, interleaved like rounds
    peak_tflops: float | None = None  # the floor's peak, instead of measured / vendor
    data: DataSource | None = None  # None only for `--plan`, which trains nothing
    ray: bool = False  # each round a Ray task (lab.engine.ray_rounds); the address is not stored
    round_cpus: int | None = None  # cores reserved per round on Ray (None for a local job)
    # Adaptive rounds (`--target-mde`, `--budget`; lab.analysis.rounds): None for a job of
    # fixed `rounds`. An adaptive job adds rounds until the first of its rule's ends is reached.
    target_mde_pct: float | None = None  # percent: the minimum detectable saving sought
    budget_s: float | None = None  # seconds of timed runs the job may spend
    min_rounds: int | None = None  # clean rounds before the target may stop it
    max_rounds: int | None = None  # rounds, disturbed ones included, it runs at most

    @property
    def adaptive(self) -> bool:
        return self.target_mde_pct is not None or self.budget_s is not None

    def base_config(self) -> Config:
        return apply_overrides(get_preset(self.preset).config, list(self.overrides))

    def cumulative(self) -> list[Variant]:
        """baseline, +step1, ...: the chain whose neighbours the report compares."""
        steps = get_steps(list(self.steps)) if self.steps else []
        return cumulative_variants(self.base_config(), steps)

    def variants(self) -> list[Variant]:
        """Every variant the job runs: the chain, the control, the leave-one-out variants."""
        chain = self.cumulative()
        extra = []
        if self.control and len(chain) > 1:
            extra.append(control_variant(chain[0].config))
        if self.leave_one_out and len(chain) > 2:
            extra.extend(leave_one_out_variants(chain[0].config, get_steps(list(self.steps))))
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        data = dict(data)
        data["steps"] = tuple(data["steps"])
        data["overrides"] = tuple(data["overrides"])
        data["data"] = DataSource(**data["data"]) if data.get("data") else None
        return cls(**data)

    def save(self, out: Path, code_hash: str) -> None:
        """plan.json: the job, its variants' configs, and what its report will state about each
        step and the article, frozen now so that a report rebuilt by later code says the same."""
        steps = get_steps(list(self.steps)) if self.steps else []
        plan = {
            "schema_version": PLAN_SCHEMA_VERSION,
            "job": self.to_dict(),
            "code_hash": code_hash,
            "variants": {v.name: v.config.to_dict() for v in self.variants()},
            "step_facts": {step.name: step.facts() for step in steps},
            "article": series_facts(),
        }
        (out / outputs.PLAN).write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, out: Path, code_hash: str) -> Job:
        """The job stored in `out`, refused when today's code or configs differ from it."""
        path = out / outputs.PLAN
        if not path.is_file():
            raise LabError(f"--resume {out}: no {outputs.PLAN} (not a lab output folder)")
        try:
            plan = json.loads(path.read_text())
            if plan.get("schema_version") != PLAN_SCHEMA_VERSION:
                raise LabError(
                    f"--resume {path}: plan schema {plan.get('schema_version')!r}; "
                    f"this lab resumes schema {PLAN_SCHEMA_VERSION} (start a new job)"
                )
            job = cls.from_dict(plan["job"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LabError(f"--resume {path}: unreadable plan") from None
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
        mine = self.to_dict()
        return [
            f"{name}={value!r} (the job has {mine[name]!r})"
            for name, value in requested.items()
            if mine[name] != value
        ]
