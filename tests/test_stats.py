"""The statistics are proven by simulation before any report trusts them: deterministic
(fixed-seed) simulated jobs with the drift and noise measured on a 2-core machine pin the
false-positive rate of a null step, the power at the default number of rounds, and the
meaning of the minimum detectable saving."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.analysis.stats import (
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    Machine,
    detection_rate,
    minimum_detectable_pct,
    paired_ratio,
    pooled_log_sd,
    simulate_rounds,
    unpaired_ratio,
)
from lab.recipe.presets import PRESETS

DEFAULT_ROUNDS = PRESETS["cpu"].rounds
JOBS = 2000  # simulated jobs per rate: a rate's standard error is at most ~1.1 points


def test_paired_ratio_of_crafted_rounds():
    before = [10.0, 20.0, 40.0]  # drift doubles the machine's time every round
    after = [9.0, 18.0, 36.0]  # a steady 10% saving
    result = paired_ratio(before, after)
    assert result.ratio == pytest.approx(0.9)
    assert result.ci95 == pytest.approx((0.9, 0.9))
    assert result.saved_pct()["estimate"] == pytest.approx(10.0)
    assert result.saved_s(5.0)["estimate"] == pytest.approx(0.5)
    assert result.verdict == SIGNIFICANT


def test_paired_ratio_needs_three_rounds_for_an_interval():
    result = paired_ratio([10.0, 11.0], [9.0, 10.5])
    assert result.ci95 is None and result.verdict.startswith("not assessed")
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])


def test_interval_is_the_student_t_interval_of_the_log_ratios():
    logs = np.array([-0.05, -0.01, -0.04, 0.02, -0.03])
    before = np.full(5, 10.0)
    result = paired_ratio(before, before * np.exp(logs))
    half = 2.7764451 * logs.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert result.ci95 == pytest.approx(
        (math.exp(logs.mean() - half), math.exp(logs.mean() + half))
    )
    saved = result.saved_pct()
    assert saved["ci95"][0] < saved["estimate"] < saved["ci95"][1]


def test_simulated_rounds_shuffle_the_order_and_drift():
    rng = np.random.default_rng(0)
    times = simulate_rounds([10.0] * 8, 200, Machine(noise_sd=0.0), rng)
    assert times.shape == (200, 8)
    # Drift moves whole rounds: the round means wander by about drift_sd_per_round.
    round_logs = np.log(times).mean(axis=1)
    assert 0.02 < np.diff(round_logs).std() < 0.1


@pytest.mark.parametrize("rounds", [3, 5, DEFAULT_ROUNDS, 20])
def test_false_positive_rate_of_a_null_step_is_at_most_6_percent(rounds):
    rate = detection_rate(0.0, rounds, JOBS, seed=rounds)
    assert rate <= 0.06, rate


def test_power_to_detect_a_5_percent_saving_at_the_default_rounds():
    assert detection_rate(0.05, DEFAULT_ROUNDS, JOBS, seed=1) >= 0.80


def test_paired_rounds_beat_independent_samples():
    """The reason for pairing: the same simulated jobs analysed as two independent samples
    (the times of each variant, ignoring rounds) find a 3% saving far less often."""
    rng = np.random.default_rng(3)
    paired_hits = unpaired_hits = 0
    for _ in range(500):
        times = simulate_rounds([10.0, 9.7, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0], 10, Machine(), rng)
        paired_hits += paired_ratio(times[:, 0], times[:, 1]).verdict == SIGNIFICANT
        unpaired_hits += unpaired_ratio(times[:, 0], times[:, 1]).verdict == SIGNIFICANT
    assert paired_hits > 2 * unpaired_hits


@pytest.mark.parametrize("log_sd,rounds", [(0.02, 10), (0.04, 8), (0.03, 15)])
def test_minimum_detectable_saving_is_detected_80_percent_of_the_time(log_sd, rounds):
    mde = minimum_detectable_pct(log_sd, rounds)
    effect = math.log(1 - mde / 100)  # the log-ratio of a saving of exactly mde percent
    rng = np.random.default_rng(7)
    before = np.full(rounds, 10.0)
    hits = 0
    for _ in range(JOBS):
        logs = rng.normal(effect, log_sd, rounds)
        hits += paired_ratio(before, before * np.exp(logs)).verdict == SIGNIFICANT
    assert hits / JOBS == pytest.approx(0.80, abs=0.03)


def test_minimum_detectable_saving_shrinks_with_rounds_and_grows_with_noise():
    assert minimum_detectable_pct(0.03, 20) < minimum_detectable_pct(0.03, 10)
    assert minimum_detectable_pct(0.05, 10) > minimum_detectable_pct(0.03, 10)
    assert minimum_detectable_pct(0.03, 2) is None


def test_pooled_noise_weights_comparisons_by_their_degrees_of_freedom():
    rng = np.random.default_rng(0)
    ratios = [paired_ratio(np.full(n, 10.0), 10.0 * np.exp(rng.normal(0, 0.03, n))) for n in (5, 9)]
    log_sd, dof = pooled_log_sd(ratios)
    assert dof == 12
    expected = math.sqrt((4 * ratios[0].log_sd ** 2 + 8 * ratios[1].log_sd ** 2) / 12)
    assert log_sd == pytest.approx(expected)


def test_unpaired_ratio_covers_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(JOBS):
        a = 10.0 * np.exp(rng.normal(0, 0.04, 6))
        b = 12.0 * np.exp(rng.normal(0, 0.08, 9))
        low, high = unpaired_ratio(a, b).ci95
        covered += low <= 1.2 <= high
    assert covered / JOBS == pytest.approx(0.95, abs=0.015)


def test_identical_samples_read_not_significant():
    assert paired_ratio([5.0, 5.0, 5.0], [5.0, 5.0, 5.0]).verdict == NOT_SIGNIFICANT
