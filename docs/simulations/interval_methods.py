"""The simulation behind docs/statistics.md: false-positive rate and power of three interval
methods for a paired saving (Student t, percentile bootstrap over rounds, Wilcoxon signed-rank)
on simulated jobs of 8 variants with drift and per-run noise.

    python docs/simulations/interval_methods.py 0.025 0.05   # per-run noise, drift per round
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats

from lab.analysis.stats import SIGNIFICANT, Machine, paired_ratio, simulate_rounds


def bootstrap_significant(logs: np.ndarray, rng: np.random.Generator, resamples: int = 999) -> bool:
    means = logs[rng.integers(0, len(logs), (resamples, len(logs)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return not low <= 0.0 <= high


def wilcoxon_significant(logs: np.ndarray) -> bool:
    return bool(np.any(logs != 0)) and stats.wilcoxon(logs).pvalue < 0.05


def rates(
    saving: float, rounds: int, machine: Machine, jobs: int, seed: int, outliers: float
) -> dict:
    """Fraction of jobs in which each method calls the step significant (in the right direction
    when there is a saving)."""
    rng = np.random.default_rng(seed)
    hits = {"t": 0, "bootstrap": 0, "wilcoxon": 0}
    true_times = [10.0, 10.0 * (1 - saving)] + [10.0] * 6
    for _ in range(jobs):
        times = simulate_rounds(true_times, rounds, machine, rng)
        times *= np.where(rng.random(times.shape) < outliers, 1.2, 1.0)
        logs = np.log(times[:, 1] / times[:, 0])
        right = saving == 0 or logs.mean() < 0
        hits["t"] += right and paired_ratio(times[:, 0], times[:, 1]).verdict == SIGNIFICANT
        hits["bootstrap"] += right and bootstrap_significant(logs, rng)
        hits["wilcoxon"] += (saving == 0 or np.median(logs) < 0) and wilcoxon_significant(logs)
    return {method: count / jobs for method, count in hits.items()}


def main() -> None:
    machine = Machine(noise_sd=float(sys.argv[1]), drift_sd_per_round=float(sys.argv[2]))
    for outliers in (0.0, 0.05):
        for rounds in (5, 8, 12, 16):
            null = rates(0.0, rounds, machine, 2000, 1, outliers)
            five = rates(0.05, rounds, machine, 1000, 2, outliers)
            three = rates(0.03, rounds, machine, 1000, 3, outliers)
            print(
                f"outliers {outliers:.0%} rounds {rounds:2d} | false positives "
                + " ".join(f"{k} {v:.3f}" for k, v in null.items())
                + " | power 5% "
                + " ".join(f"{k} {v:.2f}" for k, v in five.items())
                + " | power 3% "
                + " ".join(f"{k} {v:.2f}" for k, v in three.items()),
                flush=True,
            )


if __name__ == "__main__":
    main()
