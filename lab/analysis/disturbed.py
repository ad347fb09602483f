"""Disturbed rounds: a round in which something else took the machine for a while, so that a
stretch of its runs took several times their usual time.

One such round wrecks a job: in a real `make ablate` on a shared 2-core machine, three runs of
one round took 2-4x their usual time, which raised the job's pooled paired noise from ~10% to
33.5% and its minimum detectable saving to 30%. The t interval stays valid (it widens), but it
no longer resolves anything.

**Detection, from the times alone.** Each run's log time is split into a round effect (the
machine's drift during that round), a variant effect (what the variant costs) and a residual,
by Tukey's median polish: medians, so that a few slow runs move neither effect. A run is
*disturbed* when its residual is beyond both `SCALE_LIMIT` robust scales of the job's residuals
(1.4826 x their median absolute value) and a factor of `MIN_FACTOR` (25%) of its expected time;
a round with a disturbed run is a disturbed round, and the evidence is every such run with its
factor ("+smooth_lr took 4.4x its expected time"). The rule is fixed in advance and blind to
which comparison a run belongs to and to the direction of any saving.

**Policy: exclude the round from every comparison, and replace it.** A disturbed round is left
out of every paired comparison (so every comparison stays paired on the same rounds) and out of
the noise estimate; an adaptive job (`lab.analysis.adaptive`) counts only clean rounds, so it
runs one more. Why not a robust estimator of the mean log-ratio: its interval would need its
own calibration at 5-15 rounds, and the t interval on clean rounds keeps the calibration
already proven (docs/statistics.md). `tests/test_disturbed.py` proves this policy on simulated
jobs with 1 round in 10 disturbed: false positives <= 6%, power within a few points of the
undisturbed job's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SCALE_LIMIT = 5.0  # robust scales of the job's residuals beyond which a run is disturbed
MIN_FACTOR = 1.25  # ... and at least this factor off its expected time (quiet machines)
POLISH_SWEEPS = 4  # median-polish iterations (the effects settle in two or three)
MIN_ROUNDS_TO_JUDGE = 3  # with fewer rounds a variant's effect is not yet known


@dataclass(frozen=True)
class DisturbedRun:
    variant: str
    factor: float  # its time / the time its round and variant predict


@dataclass(frozen=True)
class DisturbedRound:
    round: int
    runs: tuple[DisturbedRun, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        runs = ", ".join(f"{r.variant} {r.factor:.1f}x" for r in self.runs)
        return f"round {self.round + 1}: {runs} its expected time"


def residuals(log_times: np.ndarray) -> np.ndarray:
    """Tukey's median polish of log times (rounds x variants, NaN where a run is missing; or
    a stack of such jobs, ... x rounds x variants): what is left of each run after its round's
    and its variant's effects."""
    left = log_times
    for _ in range(POLISH_SWEEPS):
        left = left - np.nanmedian(left, axis=-1, keepdims=True)  # the round's drift
        left = left - np.nanmedian(left, axis=-2, keepdims=True)  # the variant's cost
    return left


def robust_scale(left: np.ndarray) -> np.ndarray:
    """1.4826 x the median absolute residual of each job (the sd for normal residuals,
    unmoved by a few disturbed runs)."""
    flat = np.abs(left.reshape(*left.shape[:-2], -1))
    return 1.4826 * np.nanmedian(flat, axis=-1)


def disturbed_runs_mask(log_times: np.ndarray) -> np.ndarray:
    """Which runs (rounds x variants, or a stack of jobs) are disturbed; none below
    `MIN_ROUNDS_TO_JUDGE` rounds or with a single variant."""
    rounds, variants = log_times.shape[-2:]
    if rounds < MIN_ROUNDS_TO_JUDGE or variants < 2:
        return np.zeros(log_times.shape, bool)
    left = residuals(log_times)
    limit = np.maximum(SCALE_LIMIT * robust_scale(left), math.log(MIN_FACTOR))
    with np.errstate(invalid="ignore"):
        return np.abs(left) > limit[..., None, None]


def disturbed_rounds(times: Mapping[str, Mapping[int, float]]) -> list[DisturbedRound]:
    """The disturbed rounds of a job, from its timed runs: variant -> round -> seconds (the
    summary's `_times_by_round`, or the records' total_s by variant and round)."""
    names = sorted(times)
    rounds = sorted({r for by_round in times.values() for r in by_round})
    log_times = np.full((len(rounds), len(names)), np.nan)
    for column, name in enumerate(names):
        for row, round_index in enumerate(rounds):
            if round_index in times[name]:
                log_times[row, column] = math.log(times[name][round_index])
    mask = disturbed_runs_mask(log_times)
    if not mask.any():
        return []
    left = residuals(log_times)
    return [
        DisturbedRound(
            round=rounds[row],
            runs=tuple(
                DisturbedRun(names[c], float(math.exp(left[row, c])))
                for c in np.flatnonzero(mask[row])
            ),
        )
        for row in np.flatnonzero(mask.any(axis=1))
    ]


def clean_logs(logs: Mapping[int, float], excluded: set[int]) -> dict[int, float]:
    """A comparison's per-round log-ratios without the excluded (disturbed) rounds."""
    return {r: value for r, value in logs.items() if r not in excluded}
