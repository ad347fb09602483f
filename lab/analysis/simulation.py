"""Many simulated jobs at once, with or without disturbed rounds: the proofs of the adaptive
stopping rule (`lab.analysis.adaptive`) and of the disturbed-round detector
(`lab.analysis.disturbed`) simulate thousands of jobs of up to 60 rounds, which the one-job
loop of `lab.analysis.stats.simulate_rounds` would take minutes to do.

The machine model is `simulate_rounds`'s: each round runs every variant once in a shuffled
order; the machine's speed follows a random walk over the sequence of runs (its per-run step
chosen so that one round accumulates `drift_sd_per_round`) plus independent noise per run.

A **disturbed round** is what a shared machine did to a real job (docs/statistics.md): for a
while, something else took the cores, and the runs of that stretch of the round took 2-4x
their usual time. Here a round is disturbed with probability `rate`; the disturbance covers a
stretch of 1 to `max_runs` consecutive runs (in the round's run order) and slows each of them
by its own factor, uniform between `slow_min` and `slow_max`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lab.analysis.stats import Machine


@dataclass(frozen=True)
class Disturbance:
    """Rounds in which a stretch of runs is several times slower (rates are fractions)."""

    rate: float = 0.1  # fraction of rounds disturbed
    max_runs: int = 4  # runs slowed in a disturbed round: 1..max_runs consecutive ones
    slow_min: float = 2.0  # slowest factor range: each slowed run takes this x ...
    slow_max: float = 4.0  # ... to this x its undisturbed time


NO_DISTURBANCE = Disturbance(rate=0.0)


def simulate_jobs(
    true_times: Sequence[float],
    rounds: int,
    jobs: int,
    rng: np.random.Generator,
    machine: Machine = Machine(),  # noqa: B008 - a frozen value
    disturbance: Disturbance = NO_DISTURBANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Times (jobs x rounds x variants) of `jobs` simulated jobs, and which rounds were
    disturbed (jobs x rounds, bool)."""
    true = np.asarray(true_times, float)
    variants = len(true)
    step_sd = machine.drift_sd_per_round / math.sqrt(variants)
    drift = np.cumsum(rng.normal(0.0, step_sd, (jobs, rounds * variants)), axis=1)
    drift = drift.reshape(jobs, rounds, variants)  # by slot: the s-th run of a round
    noise = rng.normal(0.0, machine.noise_sd, (jobs, rounds, variants))
    slot_logs = drift + noise
    disturbed = rng.random((jobs, rounds)) < disturbance.rate
    if disturbance.rate > 0:
        slot_logs += _disturbance_logs(disturbed, variants, disturbance, rng)
    # order[j, r, s] = the variant run in slot s; variant v's time is its slot's factor.
    order = np.argsort(rng.random((jobs, rounds, variants)), axis=2)
    times = np.empty_like(slot_logs)
    np.put_along_axis(times, order, np.exp(slot_logs) * true[order], axis=2)
    return times, disturbed


def _disturbance_logs(
    disturbed: np.ndarray, variants: int, disturbance: Disturbance, rng: np.random.Generator
) -> np.ndarray:
    """Log slow-down per slot: a stretch of consecutive slots in each disturbed round."""
    jobs, rounds = disturbed.shape
    length = rng.integers(1, min(disturbance.max_runs, variants) + 1, (jobs, rounds))
    start = rng.integers(0, variants - length + 1)
    slots = np.arange(variants)
    inside = (slots >= start[..., None]) & (slots < (start + length)[..., None])
    factor = rng.uniform(disturbance.slow_min, disturbance.slow_max, (jobs, rounds, variants))
    return np.where(inside & disturbed[..., None], np.log(factor), 0.0)


def chain_logs(times: np.ndarray, control: bool = True) -> np.ndarray:
    """Per-round paired log-ratios (jobs x comparisons x rounds) of a simulated `--all`-like
    job whose variants are baseline, step 1, ..., step k, then the control (the last column
    when `control`): the chain's neighbours, then control vs baseline, as the summary pools
    them."""
    logs = np.log(times)
    chain = logs[..., :-1] if control else logs
    comparisons = [chain[..., i + 1] - chain[..., i] for i in range(chain.shape[-1] - 1)]
    if control:
        comparisons.append(logs[..., -1] - logs[..., 0])
    return np.stack(comparisons, axis=1)
