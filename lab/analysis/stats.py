"""The statistics behind every verdict: paired comparisons within rounds, and their calibration.

A job is a list of rounds; each round runs every variant once, in a shuffled order. Machine
speed drifts by several percent between minutes (more between hours), which would swamp a 3%
saving if the runs of two variants were compared as independent samples. Within one round the
two variants ran minutes apart under nearly the same drift, so the lab compares them *paired*:

- per round, the ratio of times r = t(after) / t(before); timing noise is multiplicative, so the
  analysis works on log r;
- the estimate is the geometric mean ratio exp(mean log r), reported as a saving in percent of
  the earlier variant, 100 x (1 - ratio);
- its 95% interval is the Student-t interval of mean log r over the rounds (n - 1 degrees of
  freedom), mapped back through exp; an interval that contains a ratio of 1 reads "not
  significant".

Why Student t and not a bootstrap or Wilcoxon: `docs/statistics.md` has the simulation. In
short, with 8-15 rounds a percentile bootstrap over rounds is too narrow (its false-positive
rate is ~8-10% at a nominal 5%), and the Wilcoxon/Hodges-Lehmann interval is discrete and wider
for the same false-positive rate; the t interval holds its 5% and has the most power. The tests
(`tests/test_stats.py`) pin the false-positive rate and the power on simulated jobs whose drift
and noise have the sizes measured on a 2-core machine, so this choice stays proven.

`simulate_rounds` is that simulation; `minimum_detectable_pct` turns a job's own paired noise
into the smallest saving it would detect with 80% power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80
MIN_ROUNDS = 3  # fewest paired rounds for which an interval is computed
SIGNIFICANT, NOT_SIGNIFICANT = "significant", "not significant"


def median(values: Sequence[float]) -> float:
    return float(np.median(values))


def not_assessed() -> str:
    return f"not assessed (needs {MIN_ROUNDS}+ rounds)"


@dataclass(frozen=True)
class Ratio:
    """A time ratio after/before with its 95% interval (None when too few rounds)."""

    ratio: float  # geometric mean of the per-round ratios
    ci95: tuple[float, float] | None
    rounds: int
    log_sd: float | None  # sample sd of the per-round log-ratios (None below 2 rounds)

    @property
    def verdict(self) -> str:
        if self.ci95 is None:
            return not_assessed()
        low, high = self.ci95
        return NOT_SIGNIFICANT if low <= 1.0 <= high else SIGNIFICANT

    def saved_pct(self) -> dict[str, object]:
        """The saving in percent of the earlier variant: `{estimate, ci95, verdict}`."""
        return self.saved_s(100.0)  # percent = the saving of an earlier variant "100 s" long

    def saved_s(self, before_s: float) -> dict[str, object]:
        """The saving in seconds, for an earlier variant that takes `before_s`. The estimate is
        that of the geometric-mean ratio (not a median of per-round savings)."""
        return {
            "estimate": before_s * (1.0 - self.ratio),
            "ci95": None if self.ci95 is None else [before_s * (1.0 - h) for h in self.ci95[::-1]],
            "verdict": self.verdict,
        }


@cache
def _t_critical(dof: int) -> float:
    """The two-sided 95% Student-t quantile (cached: the simulations ask it thousands of times)."""
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))


def _mean_interval(values: np.ndarray) -> tuple[float, float] | None:
    """The Student-t 95% interval of the mean of per-round values (None below MIN_ROUNDS)."""
    if len(values) < MIN_ROUNDS:
        return None
    half = _t_critical(len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    centre = values.mean()
    return float(centre - half), float(centre + half)


def _t_interval(logs: np.ndarray) -> tuple[float, float] | None:
    interval = _mean_interval(logs)
    if interval is None:
        return None
    return float(math.exp(interval[0])), float(math.exp(interval[1]))


def paired_ratio(before: Sequence[float], after: Sequence[float]) -> Ratio:
    """Paired comparison of two variants' times, one pair per round (same order in both)."""
    if len(before) != len(after):
        raise ValueError("paired samples need one value of each variant per round")
    return ratio_from_logs(np.log(np.asarray(after, float)) - np.log(np.asarray(before, float)))


def ratio_from_logs(logs: Sequence[float] | np.ndarray) -> Ratio:
    """The geometric-mean ratio and its t interval from per-round log-ratios."""
    logs = np.asarray(logs, float)
    return Ratio(
        ratio=float(np.exp(logs.mean())),
        ci95=_t_interval(logs),
        rounds=len(logs),
        log_sd=float(logs.std(ddof=1)) if len(logs) > 1 else None,
    )


HELD, FELL, ROSE = "held", "fell", "rose"  # an accuracy change's verdicts


@dataclass(frozen=True)
class Difference:
    """A paired difference after - before (the mean of the per-round differences) with its
    95% t interval (None below MIN_ROUNDS rounds), in the values' unit."""

    estimate: float
    ci95: tuple[float, float] | None
    rounds: int

    @property
    def significant(self) -> bool | None:
        """The interval excludes 0; None when not assessed."""
        if self.ci95 is None:
            return None
        low, high = self.ci95
        return not low <= 0.0 <= high

    @property
    def verdict(self) -> str:
        """`held`, `fell` or `rose` (significantly), or `not assessed (...)`."""
        if self.ci95 is None:
            return not_assessed()
        if not self.significant:
            return HELD
        return FELL if self.estimate < 0 else ROSE


def paired_difference(before: Sequence[float], after: Sequence[float]) -> Difference:
    """Paired comparison of two variants' accuracies (or any additive figure), one pair per
    round (same order in both): the mean per-round difference after - before, Student t.
    Accuracies are not log-normal like times: a test-set accuracy is a binomial proportion, so
    the difference, not the ratio, is what is compared (docs/statistics.md has its
    calibration)."""
    if len(before) != len(after):
        raise ValueError("paired samples need one value of each variant per round")
    differences = np.asarray(after, float) - np.asarray(before, float)
    return Difference(
        estimate=float(differences.mean()) if len(differences) else 0.0,
        ci95=_mean_interval(differences),
        rounds=len(differences),
    )


def unpaired_ratio(first: Sequence[float], second: Sequence[float]) -> Ratio:
    """Ratio of geometric means second/first from two independent samples (Welch t interval
    on the log scale), for comparisons across jobs, where no round pairs the runs."""
    return unpaired_log_shift(np.log(np.asarray(first, float)), np.log(np.asarray(second, float)))


def unpaired_log_shift(first: Sequence[float], second: Sequence[float]) -> Ratio:
    """exp(mean(second) - mean(first)) for two independent samples of log values, with its
    Welch t interval: a ratio of times, or a ratio of two jobs' paired ratios."""
    a, b = np.asarray(first, float), np.asarray(second, float)
    centre = b.mean() - a.mean()
    if min(len(a), len(b)) < MIN_ROUNDS:
        return Ratio(float(math.exp(centre)), None, min(len(a), len(b)), None)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        ci = (math.exp(centre), math.exp(centre))
    else:
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
        ci = (math.exp(centre - half), math.exp(centre + half))
    return Ratio(float(math.exp(centre)), (float(ci[0]), float(ci[1])), min(len(a), len(b)), None)


def pooled_log_sd(ratios: Sequence[Ratio]) -> tuple[float | None, int]:
    """Pooled sd of per-round log-ratios over several paired comparisons (each about its own
    mean) and its degrees of freedom: the job's paired noise."""
    usable = [r for r in ratios if r.log_sd is not None]
    dof = sum(r.rounds - 1 for r in usable)
    if dof == 0:
        return None, 0
    return math.sqrt(sum((r.rounds - 1) * r.log_sd**2 for r in usable) / dof), dof


def minimum_detectable_pct(log_sd: float, rounds: int) -> float | None:
    """Smallest saving (percent) that a paired t-test at 5% detects with 80% power, for a
    per-round log-ratio sd of `log_sd` and `rounds` rounds (noncentral t, exact)."""
    if rounds < MIN_ROUNDS or log_sd <= 0:
        return None if rounds < MIN_ROUNDS else 0.0
    dof = rounds - 1
    critical = stats.t.ppf(0.5 + CONFIDENCE / 2, dof)

    def power(effect: float) -> float:
        shift = effect / (log_sd / math.sqrt(rounds))
        return float(stats.nct.sf(critical, dof, shift) + stats.nct.cdf(-critical, dof, shift))

    low, high = 0.0, 20.0 * log_sd
    for _ in range(60):  # bisection on the log-ratio effect; power rises with it
        middle = (low + high) / 2
        low, high = (middle, high) if power(middle) < POWER else (low, middle)
    return 100.0 * (1.0 - math.exp(-high))


# ----------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class Machine:
    """Timing behaviour of a shared machine, as measured on a 2-core one (docs/statistics.md)."""

    noise_sd: float = 0.025  # run-to-run noise of one timed run (log scale)
    drift_sd_per_round: float = 0.05  # random-walk drift accumulated over one round (log scale)


def simulate_rounds(
    true_times: Sequence[float],
    rounds: int,
    machine: Machine,
    rng: np.random.Generator,
) -> np.ndarray:
    """Times (rounds x variants) of one simulated job: each round runs every variant once in a
    shuffled order; the machine's speed follows a random walk over the sequence of runs (its
    per-run step chosen so that one round accumulates `drift_sd_per_round`) plus independent
    noise per run."""
    variants = len(true_times)
    step_sd = machine.drift_sd_per_round / math.sqrt(variants)
    drift = np.cumsum(rng.normal(0.0, step_sd, rounds * variants)).reshape(rounds, variants)
    times = np.empty((rounds, variants))
    for round_index in range(rounds):
        order = rng.permutation(variants)  # slot s runs variant order[s]
        times[round_index, order] = np.asarray(true_times, float)[order] * np.exp(
            drift[round_index] + rng.normal(0.0, machine.noise_sd, variants)
        )
    return times


def detection_rate(
    saving: float,
    rounds: int,
    jobs: int,
    machine: Machine = Machine(),  # noqa: B008 - a frozen value
    seed: int = 0,
    variants: int = 8,
) -> float:
    """Fraction of simulated jobs in which a step saving `saving` (fraction of the earlier
    variant's time) reads significant: the false-positive rate at 0, the power above it.
    Each job has `variants` variants (the comparison is between the first two), so the pair's
    runs are spread through the round as in a real `--all`."""
    rng = np.random.default_rng(seed)
    true_times = [10.0, 10.0 * (1.0 - saving)] + [10.0] * (variants - 2)
    hits = 0
    for _ in range(jobs):
        times = simulate_rounds(true_times, rounds, machine, rng)
        result = paired_ratio(times[:, 0], times[:, 1])
        # Power counts only detections in the right direction; a null step counts either.
        hits += result.verdict == SIGNIFICANT and (saving == 0 or result.ratio < 1.0)
    return hits / jobs


def accuracy_detection_rate(
    change: float,
    accuracy: float,
    test_images: int,
    rounds: int,
    jobs: int,
    run_sd: float = 0.0,
    seed: int = 0,
) -> float:
    """Fraction of simulated jobs in which a step that moves the true test accuracy by
    `change` (a fraction) reads `fell` or `rose` (`paired_difference`): the false-positive
    rate at 0, the power in the right direction otherwise. Each round trains both variants
    once; a run's true accuracy is `accuracy` (plus `change` after the step) plus the
    seed-to-seed spread of training, normal with sd `run_sd`, and its measured accuracy is the
    fraction of `test_images` test images it gets right, binomial."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(jobs):
        true = accuracy + np.array([0.0, change]) + rng.normal(0.0, run_sd, (rounds, 2))
        measured = rng.binomial(test_images, np.clip(true, 0.0, 1.0)) / test_images
        result = paired_difference(measured[:, 0], measured[:, 1])
        hits += bool(result.significant) and (change == 0 or (result.estimate < 0) == (change < 0))
    return hits / jobs
