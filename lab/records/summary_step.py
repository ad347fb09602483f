"""The typed parts of a summary's `steps[]` (lab/records/summary.py holds the rest): a step's
paired saving, its counters, the article's figure, where a profiled saving came from, the
operator diff and, with `--leave-one-out`, its saving when added last and its interaction.

Units: `_s` seconds, `_pct` percent, `_pts` percentage points of test accuracy,
`_per_step_s` seconds per recorded training step; a ratio is after/before time
(dimensionless)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.records.typed import optional

FROZEN = {"frozen": True, "kw_only": True}


@dataclass(**FROZEN)
class Estimate:
    """A saving with its 95% interval: `lab.analysis.stats.Ratio.saved_pct`/`saved_s`."""

    estimate: float  # percent, or seconds, of the earlier variant's time
    ci95: list[float] | None  # [low, high] in the estimate's unit; None below 3 rounds
    verdict: str  # `significant`, `not significant` or `not assessed (...)`


@dataclass(**FROZEN)
class AccuracyChange:
    """The change in final test accuracy, after - before, paired within rounds:
    `lab.analysis.stats.paired_difference` in percentage points."""

    estimate_pts: float  # mean of the per-round differences
    low_pts: float | None  # the 95% interval's ends; None below 3 rounds
    high_pts: float | None
    significant: bool | None  # the interval excludes 0; None: not assessed
    verdict: str  # `held`, `fell`, `rose` or `not assessed (...)`
    rounds: int  # rounds in which both variants ran


@dataclass(**FROZEN)
class PhaseSaving:
    """A step's saving in one phase of the timed region (lab/recipe/vocabulary.py `PHASES`):
    before - after in seconds, paired within rounds like the total (the mean per-round
    difference and its 95% t interval), so a step's phases add up to its saving."""

    estimate_s: float  # seconds saved in the phase (negative: the phase took longer)
    low_s: float | None  # the 95% interval's ends; None below 3 rounds
    high_s: float | None
    significant: bool | None  # the interval excludes 0; None: not assessed


@dataclass(**FROZEN)
class Comparison:
    """A paired comparison of two variants: its saving in percent and in seconds."""

    saved_pct: Estimate  # percent of the earlier variant
    saved_s: Estimate  # seconds, at the earlier variant's paired time
    ratio: float  # geometric mean of the per-round time ratios after/before
    rounds: int  # rounds in which both variants ran


@dataclass(**FROZEN)
class VariantComparison:
    """A named variant against another (the control against the baseline, a leave-one-out
    variant against the final one): `variant` plus a Comparison's fields."""

    variant: str
    saved_pct: Estimate  # percent
    saved_s: Estimate  # seconds
    ratio: float  # time ratio
    rounds: int
    accuracy_change: AccuracyChange  # the named variant's accuracy against the other's
    # per phase, the named variant's saving against the other's (absent: records lack phases)
    phase_savings: dict[str, PhaseSaving] | None = optional()


@dataclass(**FROZEN)
class Expectation:
    """One counter the step promises to move, and whether it did."""

    counter: str  # a key of lab/recipe/counters.py
    expected: str  # `down`, `up`, `zero` or `same`
    before: float  # the counter's median before the step (the counter's own unit)
    after: float  # and after it
    holds: bool


@dataclass(**FROZEN)
class NoEffect:
    """A step that changes only models of one precision (or runs on one kind of device), on
    runs that trained in another."""

    needs_precision: str | None  # e.g. `fp16`; None: the step needs a device instead
    precision: str  # what the runs trained in
    needs_device: str | None = optional()  # e.g. `cuda` (absent: a precision step)
    device: str | None = optional()  # where the runs trained


@dataclass(**FROZEN)
class ArticleStep:
    """The article's figure for the step, as the plan stored it; for a step with no article
    figure only `step` (None), `saved_s` (None) and `shared_with` are in the file."""

    step: int | None  # the article's step number
    part: int | None = None  # the article's Part (None: chapter 2)
    time_s: float | None = None  # the source's seconds after the step, on `device`
    saved_s: float | None  # the source's seconds saved, on the step's own timing rule
    saved_pct: float | None = None  # percent of the article's previous time
    accuracy: float | None = None  # the article's test accuracy after the step (fraction)
    rule: str | None = None  # the timing rule: `train_eval` or `train_preprocess`
    source: str | None = None  # where the article says it
    shared_with: list[str]  # the other steps filed under that number
    ours_on_rule: Comparison | None = None  # our paired saving recomputed on `rule`
    where: str | None = None  # "Part 3" or chapter 2's script ("main1_whiten")
    device: str | None = None  # the GPU the source timed it on

    def _omitted_fields(self) -> tuple[str, ...]:
        if self.step is not None:
            return ()
        return (
            "part",
            "time_s",
            "saved_pct",
            "accuracy",
            "rule",
            "source",
            "ours_on_rule",
            "where",
            "device",
        )


@dataclass(**FROZEN)
class Attribution:
    """The rule behind `Where.came_from` (docs/profiling.md)."""

    passes: int  # profiled passes compared (the fewer of the two variants')
    threshold_per_step_s: float  # the profiler's added time of both variants
    fall_per_step_s: dict[str, float]  # per category (data, compute, other)


@dataclass(**FROZEN)
class Where:
    """Where a profiled step's saving came from."""

    seconds_change: dict[str, float]  # per category: seconds after - before (medians)
    shares: dict[str, list[float]]  # per category: [share before, share after], fractions
    came_from: str  # `data`, `compute`, `other` or `unclear`
    reason: str  # `beyond_profiler`, `beyond_spread`, `one_pass` or `within_spread`
    attribution: Attribution


@dataclass(**FROZEN)
class OperatorChange:
    """One operator's calls and self time per recorded step, before and after (medians)."""

    name: str
    calls_before: float  # calls per recorded step
    calls_after: float
    calls_change: float
    self_s_before: float  # self seconds per recorded step
    self_s_after: float
    self_s_change: float
    beyond_spread: bool | None  # every pass after on one side of every pass before; None: 1 pass


@dataclass(**FROZEN)
class Interaction:
    """A step's cumulative saving minus its saving when added last, and its paired test."""

    pct_points: float  # percentage points
    ratio: float  # cumulative time ratio over the leave-one-out one
    ci95: list[float] | None  # [low, high] of that ratio
    verdict: str
    rounds: int
    cumulative_after: str  # the variant the step follows in the chain
    is_last_step: bool
    same_config: bool  # with every other step in, the step changes no config field


@dataclass(**FROZEN)
class StepSummary:
    """One step of the chain: the paired comparison of its variant with the one before."""

    name: str
    title: str  # from the plan
    variant: str
    saved_pct: Estimate  # percent of the variant before
    saved_s: Estimate  # seconds, at the baseline's scale (the paired chain)
    ratio: float  # time ratio after/before
    rounds: int
    time_s: float  # the variant's paired time
    one_off_s: float  # change of the one-off preprocessing's median, seconds
    counter_deltas: dict[str, float]  # per counter: median after - before
    expectations: list[Expectation]
    flagged: bool  # a counter broke its expectation, or the runs differ from the plan
    accuracy_change: AccuracyChange  # paired, points
    no_effect_expected: NoEffect | None
    article: ArticleStep
    where: Where | None  # None when either variant is unprofiled
    op_diff: list[OperatorChange] | None = optional()  # absent unless both are profiled
    leave_one_out: VariantComparison | None = optional()  # absent without --leave-one-out
    interaction: Interaction | None = optional()  # likewise
    phase_savings: dict[str, PhaseSaving] | None = optional()  # absent when records lack phases

    def comparison(self) -> Comparison:
        return Comparison(
            saved_pct=self.saved_pct, saved_s=self.saved_s, ratio=self.ratio, rounds=self.rounds
        )


def comparison_fields(comparison: Comparison) -> dict[str, Any]:
    """A Comparison's fields as keyword arguments, for the types that repeat them."""
    return {
        "saved_pct": comparison.saved_pct,
        "saved_s": comparison.saved_s,
        "ratio": comparison.ratio,
        "rounds": comparison.rounds,
    }
