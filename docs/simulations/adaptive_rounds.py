"""The simulations behind docs/statistics.md's "Adaptive rounds" and "Disturbed rounds":

1. the false-positive rate of a null step (the first step, and the control) at the round an
   adaptive job stops, for the report's pooled sd as the stopping noise ("plain") and for the
   lab's blinded stopping noise (`lab.analysis.adaptive.stopping_noise`), with the median
   rounds at the stop;
2. the detection rate of a step (0: false positives; 5% or 8%: power) in jobs with 1 round in
   10 disturbed, analysed as they are ("naive"), without the disturbed rounds ("excluded"),
   and with them replaced by the next clean rounds ("replaced"), against the undisturbed job.

    python docs/simulations/adaptive_rounds.py
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from lab.analysis.adaptive import effect_per_sd, stopping_rounds
from lab.analysis.disturbed import disturbed_runs_mask
from lab.analysis.simulation import NO_DISTURBANCE, Disturbance, chain_logs, simulate_jobs
from lab.analysis.stats import Machine

JOBS = 4000


def significant(logs: np.ndarray, saving: float) -> np.ndarray:
    n = logs.shape[1]
    half = stats.t.ppf(0.975, n - 1) * logs.std(axis=1, ddof=1) / math.sqrt(n)
    mean = logs.mean(axis=1)
    return (np.abs(mean) > half) & ((mean < 0) if saving else True)


def plain_stops(logs: np.ndarray, target: float, min_rounds: int = 5) -> np.ndarray:
    """The stop if the report's pooled sd (each comparison about its own mean) decided it."""
    _, comparisons, rounds = logs.shape
    n = np.arange(1, rounds + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.cumsum(logs**2, axis=2) - np.cumsum(logs, axis=2) ** 2 / n
        sd = np.sqrt(np.maximum(within.sum(axis=1) / (comparisons * (n - 1)), 0.0))
    limits = np.array(
        [-math.log1p(-target / 100) / effect_per_sd(int(k)) if k >= 3 else 0 for k in n]
    )
    stops = (sd <= limits) & (n >= min_rounds)
    return np.where(stops.any(axis=1), np.argmax(stops, axis=1) + 1, 0)


def rate_at_stop(logs: np.ndarray, stops: np.ndarray) -> float:
    hits = sum(int(significant(logs[stops == n, :n], 0.0).sum()) for n in np.unique(stops))
    return hits / len(stops)


def stopping_table() -> None:
    print("variants machine target | rule: median rounds, false positives step / control")
    for variants in (2, 3, 4, 8):
        for noise, target in ((0.025, 5.0), (0.025, 3.0), (0.065, 8.0), (0.065, 5.0)):
            rng = np.random.default_rng(variants * 10 + int(target))
            times, _ = simulate_jobs([10.0] * variants, 80, JOBS, rng, Machine(noise_sd=noise))
            logs = chain_logs(times, control=variants > 2)
            line = f"{variants} noise {noise:.3f} target {target:.0f}%"
            for name, stops in (
                ("plain", plain_stops(logs, target)),
                ("blinded", stopping_rounds(logs, target)),
            ):
                stops = np.where(stops > 0, stops, 80)
                rates = [rate_at_stop(logs[:, k], stops) for k in (0, logs.shape[1] - 1)]
                line += f" | {name} {np.median(stops):.0f} rounds, {rates[0]:.3f} / {rates[1]:.3f}"
            print(line, flush=True)
    savings = [0.3, 0.05, 0.1, 0.02, 0.0, 0.15]
    true_times = list(10.0 * np.cumprod([1.0, *(1 - s for s in savings)])) + [10.0]
    for noise, target in ((0.025, 5.0), (0.065, 8.0)):
        rng = np.random.default_rng(4)
        logs = chain_logs(simulate_jobs(true_times, 80, JOBS, rng, Machine(noise_sd=noise))[0])
        plain, blinded = plain_stops(logs, target), stopping_rounds(logs, target)
        print(
            f"steps saving {savings}, noise {noise}, target {target}%: mean rounds at the stop "
            f"plain {plain.mean():.1f}, blinded {blinded.mean():.1f}"
        )


def disturbed_table() -> None:
    print("machine rounds variants saving | undisturbed | naive / excluded / replaced")
    for noise, rounds in ((0.025, 9), (0.065, 16)):
        for variants in (3, 8):
            for saving in (0.0, 0.05 if noise < 0.05 else 0.08):
                true_times = [10.0, 10.0 * (1 - saving)] + [10.0] * (variants - 2)
                machine = Machine(noise_sd=noise)
                rng = np.random.default_rng(7)
                quiet, _ = simulate_jobs(true_times, rounds, JOBS, rng, machine, NO_DISTURBANCE)
                times, _ = simulate_jobs(true_times, 2 * rounds, JOBS, rng, machine, Disturbance())
                logs = np.log(times[..., 1] / times[..., 0])
                clean = ~disturbed_runs_mask(np.log(times)).any(axis=2)
                naive = significant(logs[:, :rounds], saving).mean()
                excluded = np.mean(
                    [
                        clean[j, :rounds].sum() >= 3
                        and significant(logs[j, :rounds][clean[j, :rounds]][None], saving)[0]
                        for j in range(JOBS)
                    ]
                )
                order = np.argsort(~clean, axis=1, kind="stable")
                replaced = significant(np.take_along_axis(logs, order, 1)[:, :rounds], saving)
                undisturbed = significant(np.log(quiet[..., 1] / quiet[..., 0]), saving).mean()
                print(
                    f"noise {noise} {rounds} rounds {variants} variants saving {saving:.0%} | "
                    f"{undisturbed:.3f} | {naive:.3f} / {excluded:.3f} / {replaced.mean():.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    stopping_table()
    disturbed_table()
