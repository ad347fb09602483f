"""Adaptive rounds: run rounds until the job resolves the savings the user asked for
(`--target-mde PCT`), or the time they gave it (`--budget DURATION`) or `--max-rounds` runs out.

The rule stops on the **noise estimate alone**: after each round (and at least `min_rounds`
clean ones), the job's minimum detectable saving (a paired t-test at 5% with 80% power,
`lab.analysis.stats.minimum_detectable_pct`) is compared with the target. It never looks at a
saving's sign or a verdict, so a step cannot stop the job by turning significant.

Stopping on the noise alone is not quite free. The mean of normal data is independent of the
whole sequence of its running sample variances (Helmert), so the estimate stays unbiased; but a
job that stops the first time its sample sd happens to be small keeps that small sd in its
intervals, which are then a little too narrow. Measured (docs/simulations/adaptive_rounds.py):
with the report's pooled sd (each comparison about its own mean) as the stopping noise, a null
step read significant in 6.7-8.5% of jobs with one comparison and in up to 6.7% with two.
The cure is the blinded variance estimate of sample-size re-estimation (Kieser & Friede 2003):
a comparison's sum of squares about **zero** rather than about its mean is a function of the
|log-ratios| alone, so under a null step it is independent of the signs that make the verdict,
and stopping on it keeps the t-test at its 5% (measured: 4.4-5.8%). A real saving inflates that
sum by n x mean^2, which would make a job with a 30% step run for ever; a comparison whose own
t statistic is at least `CLEARLY_REAL_T` (6: a null comparison gets there with probability
~0.4% at 4 degrees of freedom, far less at more) contributes its sum about its mean instead.
The stopping noise is never below the report's pooled noise, so a job that stops on the target
prints a minimum detectable saving at or below it. The price, measured: ~1 more round when the
steps are null, 20-25% more rounds in a job with several moderate (2-15%) savings.

Rounds judged disturbed (`lab.analysis.disturbed`) count neither towards `min_rounds` nor the
resolution: the caller passes the log-ratios of the clean rounds only, so a disturbed round is
simply replaced by the next one.

`decide` is the pure function the engine calls after every round; `AdaptiveRule` is what
plan.json keeps so that `--resume` continues the job under its own rule.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lab.analysis.stats import MIN_ROUNDS, minimum_detectable_pct, pooled_log_sd, ratio_from_logs
from lab.errors import LabError

TARGET, BUDGET, MAX_ROUNDS = "target", "budget", "max_rounds"  # why an adaptive job stopped
STOP_REASONS = {
    TARGET: "the minimum detectable saving reached the target",
    BUDGET: "the next round would exceed the time budget",
    MAX_ROUNDS: "the job ran its maximum number of rounds",
}
DEFAULT_MIN_ROUNDS = 5  # clean rounds before the noise estimate may stop a job
DEFAULT_MAX_ROUNDS = 100  # rounds (clean or disturbed) an adaptive job runs at most
ROUNDS_SEARCH_LIMIT = 100_000  # the largest number of rounds `rounds_for_target` considers
CLEARLY_REAL_T = 6.0  # |t| from which a comparison's noise is taken about its own mean

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str, flag: str = "--budget") -> float:
    """Seconds in a duration such as `90s`, `30m`, `2h` or `1h30m` (units required, in the
    order h, m, s); a one-line `LabError` naming `flag` otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise LabError(
            f"{flag} {text!r}: expected a duration with units, like 90s, 30m, 2h or 1h30m"
        )
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    total = 3600.0 * hours + 60.0 * minutes + seconds
    if total <= 0:
        raise LabError(f"{flag} {text!r}: must be longer than zero")
    return total


def check_target_mde(pct: float, flag: str = "--target-mde") -> float:
    """The target minimum detectable saving in percent, refused outside (0, 100)."""
    if not 0.0 < pct < 100.0:
        raise LabError(f"{flag} {pct:g}: a saving in percent, above 0 and below 100")
    return pct


@dataclass(frozen=True)
class AdaptiveRule:
    """When an adaptive job stops; stored in plan.json so that `--resume` keeps it."""

    target_mde_pct: float | None = None  # percent of the earlier variant; None: budget only
    budget_s: float | None = None  # seconds of timed rounds; None: no time limit
    min_rounds: int = DEFAULT_MIN_ROUNDS  # clean rounds before the target may stop the job
    max_rounds: int = DEFAULT_MAX_ROUNDS  # rounds run (clean or disturbed) at most

    def __post_init__(self) -> None:
        if self.target_mde_pct is None and self.budget_s is None:
            raise LabError("adaptive rounds need --target-mde or --budget")
        if self.target_mde_pct is not None:
            check_target_mde(self.target_mde_pct)
        if self.budget_s is not None and self.budget_s <= 0:
            raise LabError(f"--budget {self.budget_s:g} s: must be longer than zero")
        if self.min_rounds < MIN_ROUNDS:
            raise LabError(f"--min-rounds {self.min_rounds}: must be >= {MIN_ROUNDS}")
        if self.max_rounds < self.min_rounds:
            raise LabError(
                f"--max-rounds {self.max_rounds}: must be >= the minimum of {self.min_rounds}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptiveRule:
        return cls(**data)


@dataclass(frozen=True)
class Decision:
    """What `decide` concluded after a round, with the figures the report and the progress
    line need."""

    stop: bool
    reason: str | None  # TARGET, BUDGET or MAX_ROUNDS when stopping; None when continuing
    clean_rounds: int  # rounds the statistics use (disturbed ones excluded)
    rounds_run: int  # every round run, disturbed ones included
    paired_sd_pct: float | None  # the job's pooled paired noise, percent (log scale x 100)
    min_detectable_pct: float | None  # at `clean_rounds`; what the report will print
    stopping_mde_pct: float | None  # the same from `stopping_noise`: what the target is tested on
    rounds_to_target: int | None  # further clean rounds the noise so far says the target needs
    round_s: float | None  # estimated seconds of one round (median of the rounds so far)
    rounds_in_budget: int | None  # further rounds that fit in what is left of the budget

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def effect_per_sd(rounds: int) -> float:
    """The log-ratio a paired t-test at 5% detects with 80% power, per unit of per-round sd, at
    `rounds` rounds: the minimum detectable saving is 100 (1 - exp(-sd x this))."""
    return -math.log1p(-minimum_detectable_pct(1.0, rounds) / 100.0)


def detectable_pct(log_sd: float, rounds: int) -> float:
    """`minimum_detectable_pct` through the cached `effect_per_sd` (the same figure, fast
    enough to evaluate after every round of thousands of simulated jobs)."""
    return 100.0 * -math.expm1(-log_sd * effect_per_sd(rounds))


def rounds_for_target(log_sd: float, target_pct: float) -> int | None:
    """The fewest rounds whose minimum detectable saving at a per-round sd of `log_sd` is at
    most `target_pct` (None beyond `ROUNDS_SEARCH_LIMIT`)."""
    if log_sd <= 0:
        return MIN_ROUNDS
    if detectable_pct(log_sd, ROUNDS_SEARCH_LIMIT) > target_pct:
        return None
    low, high = MIN_ROUNDS - 1, MIN_ROUNDS  # detectable(low) > target once `high` is found
    while detectable_pct(log_sd, high) > target_pct:
        low, high = high, 2 * high
    while high - low > 1:  # the detectable saving falls as rounds rise
        middle = (low + high) // 2
        low, high = (middle, high) if detectable_pct(log_sd, middle) > target_pct else (low, middle)
    return high


def job_noise(comparison_logs: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """The job's paired noise as the report states it: the sd of per-round log-ratios pooled
    over its comparisons, each about its own mean, and its degrees of freedom."""
    return pooled_log_sd([ratio_from_logs(logs) for logs in comparison_logs if len(logs)])


def stopping_noise(comparison_logs: Sequence[Sequence[float]]) -> float | None:
    """The noise the stopping rule uses: per comparison the sum of squares of its log-ratios
    about zero (blinded), or about its mean when its |t| is at least `CLEARLY_REAL_T`, pooled
    over the comparisons' degrees of freedom (n - 1 each). At least `job_noise`'s figure."""
    squares, dof = 0.0, 0
    for logs in comparison_logs:
        values = np.asarray(logs, float)
        if len(values) < 2:
            continue
        about_mean = float(((values - values.mean()) ** 2).sum())
        about_zero = float((values**2).sum())
        squares += about_mean if _clearly_real(values, about_mean) else about_zero
        dof += len(values) - 1
    return math.sqrt(squares / dof) if dof else None


def _clearly_real(values: np.ndarray, about_mean: float) -> bool:
    n = len(values)
    if about_mean == 0.0:
        return bool(values.mean() != 0.0)
    return abs(values.mean()) / math.sqrt(about_mean / (n - 1) / n) >= CLEARLY_REAL_T


def decide(
    rule: AdaptiveRule,
    comparison_logs: Sequence[Sequence[float]],
    rounds_run: int,
    elapsed_s: float,
    round_durations_s: Sequence[float],
) -> Decision:
    """Continue or stop an adaptive job after a round.

    `comparison_logs`: per comparison of the job (each step and the control vs the baseline),
    its per-round log time ratios over the clean rounds; `rounds_run`: rounds run so far,
    disturbed ones included; `elapsed_s`: seconds of the job's timed rounds so far (all
    sessions); `round_durations_s`: seconds of each round run (the next round's time is their
    median, which one disturbed round does not move).

    The target is checked first (a job that reached it stops with TARGET even on its last
    allowed round), then the rounds cap, then the budget."""
    clean = max((len(logs) for logs in comparison_logs), default=0)
    log_sd, _ = job_noise(comparison_logs)
    mde = detectable_pct(log_sd, clean) if log_sd is not None and clean >= MIN_ROUNDS else None
    stop_sd = stopping_noise(comparison_logs)
    stop_mde = (
        detectable_pct(stop_sd, clean) if stop_sd is not None and clean >= MIN_ROUNDS else None
    )
    to_target = None
    if rule.target_mde_pct is not None and stop_sd is not None:
        needed = rounds_for_target(stop_sd, rule.target_mde_pct)
        to_target = None if needed is None else max(needed, rule.min_rounds) - clean
        to_target = None if to_target is None else max(to_target, 0)
    round_s = _median(round_durations_s)
    in_budget = None
    if rule.budget_s is not None and round_s is not None:
        in_budget = max(int((rule.budget_s - elapsed_s) // round_s), 0) if round_s > 0 else None
    reason = None
    if (
        rule.target_mde_pct is not None
        and clean >= rule.min_rounds
        and stop_mde is not None
        and stop_mde <= rule.target_mde_pct
    ):
        reason = TARGET
    elif rounds_run >= rule.max_rounds:
        reason = MAX_ROUNDS
    elif in_budget == 0:
        reason = BUDGET
    return Decision(
        stop=reason is not None,
        reason=reason,
        clean_rounds=clean,
        rounds_run=rounds_run,
        paired_sd_pct=None if log_sd is None else 100.0 * log_sd,
        min_detectable_pct=mde,
        stopping_mde_pct=stop_mde,
        rounds_to_target=to_target,
        round_s=round_s,
        rounds_in_budget=in_budget,
    )


def _median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# ----------------------------------------------------------------------------- simulation


def stopping_rounds(
    comparison_logs: np.ndarray,
    target_pct: float,
    min_rounds: int = DEFAULT_MIN_ROUNDS,
) -> np.ndarray:
    """For simulated jobs (jobs x comparisons x rounds of per-round log-ratios, all clean),
    the clean rounds at which `decide`'s target test first stops each job, or 0 where it never
    does within the rounds simulated (the budget or the cap ends that job). Vectorised over
    jobs: the running `stopping_noise` after every round, then the same test as `decide`."""
    jobs, comparisons, rounds = comparison_logs.shape
    n = np.arange(1, rounds + 1)
    sums = np.cumsum(comparison_logs, axis=2)
    about_zero = np.cumsum(comparison_logs**2, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        about_mean = about_zero - sums**2 / n  # each comparison about its own running mean
        t = np.abs(sums / n) / np.sqrt(about_mean / (n - 1) / n)
        squares = np.where(t >= CLEARLY_REAL_T, about_mean, about_zero)
        stop_var = squares.sum(axis=1) / (comparisons * (n - 1))
    stop_sd = np.sqrt(np.maximum(stop_var, 0.0))
    limits = np.array(
        [
            -math.log1p(-target_pct / 100.0) / effect_per_sd(int(k)) if k >= MIN_ROUNDS else 0.0
            for k in n
        ]
    )
    stops = (stop_sd <= limits) & (n >= min_rounds)
    first = np.argmax(stops, axis=1) + 1
    return np.where(stops.any(axis=1), first, 0)
