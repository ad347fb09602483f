"""Medians and bootstrap confidence intervals for timing comparisons.

Savings are differences of medians between neighbouring variants, so they telescope: the steps'
savings add up exactly to baseline minus final. Their 95% confidence intervals come from
`scipy.stats.bootstrap` (percentile method, runs of the two variants resampled independently,
9,999 resamples, fixed seed so a report rebuilds identically). An interval that contains zero is
reported as "not significant".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

RESAMPLES = 9_999
CONFIDENCE = 0.95
SEED = 20180101
MIN_RUNS = 3  # fewest runs per variant for which an interval is computed


def median(values: Sequence[float]) -> float:
    return float(np.median(values))


def _median_difference(first: np.ndarray, second: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(first, axis=axis) - np.median(second, axis=axis)


def _median(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(sample, axis=axis)


def _bootstrap(
    data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray]
) -> tuple[float, float] | None:
    if any(len(sample) < MIN_RUNS for sample in data):
        return None  # too few runs: a bootstrap of 1-2 values says nothing about spread
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples of identical values warn
        result = stats.bootstrap(
            data,
            statistic,
            n_resamples=RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(SEED),
        )
    low, high = result.confidence_interval
    return float(low), float(high)


def median_ci(values: Sequence[float]) -> tuple[float, float] | None:
    """95% bootstrap interval of the median of one variant's runs."""
    return _bootstrap((np.asarray(values, float),), _median)


def saving_ci(before: Sequence[float], after: Sequence[float]) -> tuple[float, float] | None:
    """95% bootstrap interval of median(before) - median(after)."""
    return _bootstrap((np.asarray(before, float), np.asarray(after, float)), _median_difference)


def verdict(ci: tuple[float, float] | None) -> str:
    """'significant', 'not significant' (the interval includes zero), or why none was computed."""
    if ci is None:
        return f"not assessed (needs {MIN_RUNS}+ runs per variant)"
    low, high = ci
    return "not significant" if low <= 0.0 <= high else "significant"
