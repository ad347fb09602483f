"""`summary.json` as types: the summary `lab.analysis.summary.build_summary` builds and
`lab.render` reads, with `Summary.to_json` (the file's bytes) and `read_summary` (the file back
into these types, so a report renders from an old summary). docs/records.md describes the file
field by field from these dataclasses (tests/test_summary_types.py holds the two together).

Units: `_s` seconds, `_pct` percent, `_tflops` 10^12 floating-point operations per second,
`_per_step_s` seconds per recorded training step, `_cores` CPU seconds per wall second, `_pts`
percentage points of accuracy; accuracies and shares are fractions. The steps' parts are in
lab/records/summary_step.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.recipe.vocabulary import CHAIN_ROLES
from lab.records.summary_step import FROZEN, StepSummary, VariantComparison
from lab.records.typed import from_jsonable, optional, to_jsonable

SUMMARY_SCHEMA_VERSION = 5


@dataclass(**FROZEN)
class Meta:
    """Of the first timed run: what ran, where, with which code."""

    preset: str | None
    device_name: str | None
    cpu_model: str | None
    cpu_cores: int | None
    torch_version: str | None
    python_version: str | None
    lab_version: str | None
    git_revision: str | None
    code_hash: str | None
    date: str | None  # UTC
    command: str | None
    order_seed: int | None
    job_rounds: int | None


@dataclass(**FROZEN)
class DisturbedRun:
    variant: str
    factor: float  # the run's time over what its round and variant predict


@dataclass(**FROZEN)
class DisturbedRound:
    round: int  # 0-based
    runs: list[DisturbedRun]


@dataclass(**FROZEN)
class RoundsStop:
    """Why the job ran the rounds it ran (`lab.analysis.rounds.next_round` on the records)."""

    reason: str | None  # None: the rule would run another round
    planned_rounds: int
    rounds_run: int
    clean_rounds: int
    replacement_cap: int | None  # None for an adaptive job


@dataclass(**FROZEN)
class AdaptiveRuleSummary:
    """`lab.analysis.adaptive.AdaptiveRule`'s fields, as the plan stored them."""

    target_mde_pct: float | None  # percent
    budget_s: float | None  # seconds of timed runs
    min_rounds: int
    max_rounds: int


@dataclass(**FROZEN)
class Adaptive:
    """An adaptive job's rule and where it stood at the end."""

    rule: AdaptiveRuleSummary
    reason: str | None
    target_mde_pct: float | None  # percent
    min_detectable_pct: float | None  # percent, at the clean rounds
    stopping_mde_pct: float | None  # percent, on the blinded noise the rule stops on
    clean_rounds: int
    rounds_run: int
    spent_s: float  # seconds of timed runs, warm-up included
    budget_s: float | None
    round_s: float | None  # the median round, seconds


@dataclass(**FROZEN)
class Sessions:
    count: int
    wall_s: float  # sum over the invocations
    finished: bool


@dataclass(**FROZEN)
class Host:
    """A `--ray` job's runs on one host."""

    runs: int
    rounds: list[int]
    rounds_at_once: int
    cores_per_round: int
    devices: list[str]


@dataclass(**FROZEN)
class Sample:
    """A figure over a variant's runs."""

    median: float
    values: list[float]  # in the order of the variant's `rounds`


@dataclass(**FROZEN)
class Timing:
    """Seconds per run, by part of the run."""

    total_s: Sample  # the timed region: train_s + eval_s
    train_s: Sample
    eval_s: Sample
    preprocess_s: Sample  # one-off, outside the timed region
    whitening_s: Sample  # of preprocess_s: the whitening filters' eigendecomposition
    final_eval_s: Sample  # of eval_s: the last epoch's evaluation


@dataclass(**FROZEN)
class Accuracy:
    median: float  # fraction
    values: list[float]  # fractions
    target: float  # fraction
    reached: int  # runs that reached the target
    runs: int


@dataclass(**FROZEN)
class Floor:
    """The article's minimum-time calculation for the variant on this device."""

    flops_per_image: float  # forward + backward
    total_flops: float
    peak_tflops: float  # the peak used
    peak_source: str
    measured_peak_tflops: float | None
    vendor_peak_tflops: float | None
    peak_dtype: str
    floor_s: float
    efficiency: float | None  # floor_s / median run (fraction)


@dataclass(**FROZEN)
class ProfileSeconds:
    """Seconds of the recorded training steps (medians over passes)."""

    step: float
    data: float
    compute: float
    other: float
    h2d: float
    eval: float
    preprocess: float

    def by_category(self) -> dict[str, float]:
        """The three categories a step's time is split into (`lab.analysis.summary.CATEGORIES`)."""
        return {"data": self.data, "compute": self.compute, "other": self.other}


@dataclass(**FROZEN)
class StepSpread:
    median: float  # seconds per recorded step
    range: list[float]  # [min, max] over passes, seconds per recorded step


@dataclass(**FROZEN)
class CpuUse:
    """CPU use during the recorded steps (medians over passes; the record's `cpu`)."""

    machine_cores: float | None  # os.cpu_count()
    main_cores: float | None  # cores: CPU seconds per wall second
    usable_cores: float | None  # the affinity mask
    wall_s: float | None
    worker_processes: float | None  # None without /proc
    workers_cores: float | None  # cores; None without /proc
    unprofiled: CpuUse | None = optional()  # the same over the pass's unprofiled steps


@dataclass(**FROZEN)
class Profile:
    """Where a variant's step time goes, over its profiled passes."""

    tb_run: str  # the run's folder under tb/
    trace: str  # the first pass's trace file
    train_steps: int
    seconds: ProfileSeconds
    shares: dict[str, float]  # per category (data, compute, other), of the median seconds
    profiled_steps_s: float
    unprofiled_steps_s: float
    profiler_overhead: float | None  # profiled / unprofiled - 1 (fraction)
    passes: int
    traces: list[str]
    per_step_s: dict[str, list[float]]  # per category, one value per pass
    profiler_added_per_step_s: list[float]  # per pass: |profiled - unprofiled| per step
    phases_per_step_s: dict[str, float]  # per phase of the breakdown chart (medians)
    step_per_step_s: StepSpread
    cpu: CpuUse | None


@dataclass(**FROZEN)
class VariantSummary:
    """One variant over its timed runs (disturbed rounds left out)."""

    name: str
    role: str  # `baseline`, `step`, `control` or `leave_one_out`
    steps: list[str]
    runs: int
    rounds: list[int]  # the round of each run
    timing: Timing
    accuracy: Accuracy
    learned: bool  # median accuracy at least twice chance (lab.analysis.summary.learned)
    counters: dict[str, float]  # medians, per counter of lab/recipe/counters.py
    expected_counters: dict[str, Any]  # what the plan implies
    counters_match_plan: bool
    params: int
    flops_per_image: float
    precision: str  # what the runs trained in
    device: str  # where they trained: "cpu", "cuda:0", ...
    config: dict[str, Any]  # the resolved config
    floor: Floor
    profile: Profile | None = optional()  # absent unless profiled
    paired_time_s: float | None = optional()  # chain only: the baseline times chained ratios
    # Seconds per phase of the timed region (vocabulary.PHASES), over the runs; absent when a
    # run's record has no `phases_s` (records written before phases were accounted).
    phases_s: dict[str, Sample] | None = optional()


@dataclass(**FROZEN)
class Power:
    paired_sd_pct: float | None  # pooled sd of the per-round log-ratios, percent
    degrees_of_freedom: int
    rounds: int  # clean
    excluded_rounds: int  # disturbed
    min_detectable_pct: float | None  # percent, at 80% power
    power: float  # fraction
    test: str


@dataclass(**FROZEN)
class Total:
    baseline_s: float
    final_s: float  # the paired chain
    final_median_s: float | None  # the final variant's median run
    saved_s: float
    saved_pct: float | None
    sum_of_step_savings_s: float  # equal to saved_s
    one_off_preprocessing_s: float | None


@dataclass(**FROZEN)
class ArticleTotals:
    """The article's figures for the stretch of the series the job covers, keyed by step
    number as a string."""

    device: str  # the stretch's device(s): "V100", "A100" or "V100, then A100"
    times_s: dict[str, float]  # the sources' seconds after each step, on its own device
    labels: dict[str, str]
    rules: dict[str, str]  # timing rule per step
    last_step: int
    baseline_s: float  # the article's seconds at the job's start (`start_step`)
    final_s: float
    saved_s: float
    # `--from`: the article's step the chain starts after (its baseline is the article's time
    # there); absent for a chain from the article's baseline.
    start_step: int | None = optional()
    # Each step's device, and where a chapter starts on another device than the step before
    # it, the time there re-measured on the new one (chapter 2: Page's final on an A100).
    devices: dict[str, str] = field(default_factory=dict)
    restarts_s: dict[str, float] = field(default_factory=dict)


@dataclass(**FROZEN)
class Summary:
    """summary.json."""

    schema_version: int
    meta: Meta | None  # None (written `{}`) for a job with no timed run
    first_run_date: str | None
    last_run_date: str | None
    warmup_runs: int
    rounds: int  # clean rounds: what every comparison uses
    rounds_run: int
    disturbed_rounds: list[DisturbedRound]
    rounds_stop: RoundsStop
    adaptive: Adaptive | None
    sessions: Sessions
    hosts: dict[str, Host] | None  # `--ray` jobs, by host name
    variants: list[VariantSummary]  # the chain in order, then the control and leave-one-out
    control: VariantComparison | None
    power: Power
    steps: list[StepSummary]
    leave_one_out: bool
    total: Total
    article: ArticleTotals
    profiled: bool
    # `--from STEP`: the steps the baseline already has (absent for a chain from the preset).
    start: list[str] | None = optional()

    def as_dict(self) -> dict[str, Any]:
        data = to_jsonable(self)
        if self.meta is None:
            data["meta"] = {}
        return data

    def to_json(self) -> str:
        """summary.json's text."""
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def chain(self) -> list[VariantSummary]:
        """The baseline and cumulative variants, in the order the steps were applied."""
        return [v for v in self.variants if v.role in CHAIN_ROLES]

    def profiled_variants(self) -> list[VariantSummary]:
        return [v for v in self.variants if v.profile is not None]

    def meta_or_empty(self) -> Meta:
        return self.meta or Meta(**dict.fromkeys(Meta.__dataclass_fields__))


def summary_from_dict(data: dict[str, Any], where: str = "summary.json") -> Summary:
    if data.get("meta") == {}:
        data = {**data, "meta": None}
    return from_jsonable(Summary, data, where)


def read_summary(path: Path) -> Summary:
    """A summary.json back into its types; a file of another schema is a one-line error."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LabError(f"{path}: cannot read the summary ({error})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SUMMARY_SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise LabError(
            f"{path}: summary schema_version {found}, this lab reads {SUMMARY_SCHEMA_VERSION} "
            "(rebuild it with python -m lab.report)"
        )
    return summary_from_dict(data, str(path))
