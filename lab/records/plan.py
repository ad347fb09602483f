"""plan.json: a job's description, written when it starts, read by `--resume`, the report and
the comparison. The job is described once, here, in the plan's form (`JobSpec`); the engine's
`lab.engine.job.Job` is a `JobSpec` that also knows how to run (its variants and schedule).

Besides the job the plan holds the code's hash, the variants' configs and what the job's report
states about each step and the article, frozen when it starts so that a report rebuilt by later
code says the same. Older plans are read through one door, `upgrade_plan`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from lab.errors import LabError
from lab.records import outputs, schema2
from lab.records.jsonl import READABLE_SCHEMAS

PLAN_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class DataSource:
    path: str  # the resolved data folder
    fingerprint: str  # hash of its files' paths, sizes and mtimes (the decoded cache's key)


@dataclass(frozen=True)
class JobSpec:
    """A job as plan.json stores it (its "job" object): what to run, in which order, on which
    data. Plain data; `lab.engine.job.Job` adds the variants and the schedule."""

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
    # `--from STEP`: the steps applied to the preset before the chain, in order; the baseline
    # and the control are the recipe after them. () for a chain from the preset's recipe.
    start: tuple[str, ...] = ()

    @property
    def adaptive(self) -> bool:
        return self.target_mde_pct is not None or self.budget_s is not None

    def to_dict(self) -> dict[str, Any]:
        """plan.json's "job" object (every field; a schema-2 plan's job lacks the later ones;
        `start` only for a `--from` job, so the plans written before it read back the same)."""
        data = dataclasses.asdict(self)
        if not self.start:
            del data["start"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The job of a plan's "job" object; fields an older writer omitted take their
        defaults. Raises KeyError or TypeError for an object that is not a job."""
        data = dict(data)
        data["steps"] = tuple(data["steps"])
        data["start"] = tuple(data.get("start", ()))
        data["overrides"] = tuple(data.get("overrides", ()))
        data["data"] = DataSource(**data["data"]) if data.get("data") else None
        return cls(**data)


def plan_job(plan: dict[str, Any]) -> JobSpec:
    """The job of a plan read by `read_plan`."""
    return JobSpec.from_dict(plan["job"])


def write_plan(
    out: Path,
    job: JobSpec,
    code_hash: str,
    variants: dict[str, dict[str, Any]],
    step_facts: dict[str, dict[str, Any]],
    article: dict[str, Any],
) -> None:
    """out/plan.json: the job, the code's hash, the variants' configs (name -> config dict) and
    the facts its report will state about each step and the article."""
    plan = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "job": job.to_dict(),
        "code_hash": code_hash,
        "variants": variants,
        "step_facts": step_facts,
        "article": article,
    }
    (out / outputs.PLAN).write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")


def read_resumable_plan(out: Path) -> dict[str, Any]:
    """The plan in `out` as `--resume` reads it: only the current schema (a job is resumed by
    the code that can write its records, never upgraded half-way)."""
    path = out / outputs.PLAN
    if not path.is_file():
        raise LabError(f"--resume {out}: no {outputs.PLAN} (not a lab output folder)")
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise LabError(f"--resume {path}: unreadable plan") from None
    if not isinstance(plan, dict):
        raise LabError(f"--resume {path}: unreadable plan")
    if plan.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise LabError(
            f"--resume {path}: plan schema {plan.get('schema_version')!r}; "
            f"this lab resumes schema {PLAN_SCHEMA_VERSION} (start a new job)"
        )
    return plan


def read_plan(path: Path) -> dict[str, Any]:
    """A job's plan.json in the current schema: the job, its variants' configs and the facts
    its report states about each step and the article (`upgrade_plan` for older plans)."""
    if not path.is_file():
        raise LabError(f"{path}: no such plan (not a lab output folder)")
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise LabError(f"{path}: not a JSON plan") from None
    if plan.get("schema_version") not in READABLE_SCHEMAS:
        raise LabError(
            f"{path}: plan schema {plan.get('schema_version')!r}; "
            f"this lab reads {', '.join(map(str, READABLE_SCHEMAS))}"
        )
    return upgrade_plan(plan)


def upgrade_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan of any readable schema in the current one. A schema-2 plan stored no step or
    article facts: they come from `lab.records.schema2`, the frozen table of what the last
    schema-2 code said, never from today's registry."""
    if plan["schema_version"] == PLAN_SCHEMA_VERSION:
        return plan
    unknown = [name for name in plan["job"]["steps"] if name not in schema2.STEP_FACTS]
    if unknown:
        raise LabError(
            f"plan.json: steps {', '.join(unknown)} unknown to the last schema-2 lab; "
            "its report cannot be rebuilt by this one"
        )
    return {
        **plan,
        "schema_version": PLAN_SCHEMA_VERSION,
        "step_facts": {name: schema2.STEP_FACTS[name] for name in plan["job"]["steps"]},
        "article": schema2.ARTICLE_FACTS,
    }
