"""A step's accuracy change and the `learned` flag: the paired difference's arithmetic on
crafted rounds, its false-positive rate and power proven on simulated jobs scored on a
binomial test set (fixed seeds), the rule that a variant did not learn, and where the report
and the waterfall say both."""

from __future__ import annotations

import dataclasses
import math

import pytest

from lab import REPO_ROOT
from lab.analysis.stats import (
    FELL,
    HELD,
    ROSE,
    accuracy_detection_rate,
    paired_difference,
)
from lab.analysis.summary import LEARNED_AT, learned, paired_accuracy
from lab.records.summary import read_summary
from lab.records.summary_step import AccuracyChange
from lab.render.report import render_report
from lab.render.waterfall import marked_labels

JOBS = 2000  # simulated jobs per rate: a rate's standard error is at most ~1.1 points
SERIES = REPO_ROOT / "reports" / "example-cpu-series-long"


def test_a_steady_fall_is_significant_and_reads_fell():
    change = paired_difference([50.0, 60.0, 70.0], [42.0, 52.0, 62.0])
    assert change.estimate == pytest.approx(-8.0)
    assert change.ci95 == pytest.approx((-8.0, -8.0))
    assert change.significant is True and change.verdict == FELL


def test_the_interval_is_the_student_t_interval_of_the_differences():
    change = paired_difference([10.0, 10.0, 10.0], [11.0, 12.0, 13.0])
    half = 4.3026527 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert change.ci95 == pytest.approx((2.0 - half, 2.0 + half))
    assert change.significant is False and change.verdict == HELD
    assert paired_difference([10.0] * 4, [12.0, 12.5, 11.5, 12.0]).verdict == ROSE


def test_identical_accuracies_held_and_two_rounds_are_not_assessed():
    assert paired_difference([61.2] * 5, [61.2] * 5).verdict == HELD
    two = paired_difference([50.0, 60.0], [40.0, 50.0])
    assert two.ci95 is None and two.significant is None
    assert two.verdict.startswith("not assessed")
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


@pytest.mark.parametrize("rounds", [3, 5, 9, 20])
@pytest.mark.parametrize(
    ("test_images", "accuracy", "run_sd"),
    [
        (500, 0.15, 0.02),  # the CPU presets: 500 test images, ~2 points between seeds
        (500, 0.6, 0.0),  # a pure binomial, no training noise
        (200, 0.94, 0.0),  # the smoke preset near the article's accuracy: the most discrete
        (10_000, 0.94, 0.002),  # the article's scale
    ],
)
def test_false_positive_rate_of_an_unchanged_accuracy_is_at_most_6_percent(
    rounds, test_images, accuracy, run_sd
):
    rate = accuracy_detection_rate(0.0, accuracy, test_images, rounds, JOBS, run_sd, seed=rounds)
    assert rate <= 0.06


def test_a_5_point_fall_is_found_at_the_cpu_presets_scale():
    # 500 test images, ~2 points between seeds: per-round differences of ~4.2 points sd.
    assert accuracy_detection_rate(-0.05, 0.6, 500, 9, JOBS, 0.02, seed=1) >= 0.8
    assert accuracy_detection_rate(-0.05, 0.6, 500, 20, JOBS, 0.02, seed=2) >= 0.99


def test_a_variant_learned_at_twice_chance():
    assert LEARNED_AT == pytest.approx(0.2)
    assert learned(0.2) and learned(0.608)
    assert not learned(0.199) and not learned(0.124) and not learned(0.1)


def test_accuracy_is_paired_on_the_rounds_both_variants_ran():
    summary = read_summary(SERIES / "summary.json")
    base = summary.variants[0]

    def variant(rounds: list[int], values: list[float]):
        accuracy = dataclasses.replace(base.accuracy, values=values)
        return dataclasses.replace(base, rounds=rounds, accuracy=accuracy)

    before = variant([0, 1, 2, 3], [0.50, 0.60, 0.55, 0.40])
    after = variant([1, 2, 3, 4], [0.58, 0.53, 0.38, 0.90])  # round 4 has no pair
    change = paired_accuracy(before, after)
    assert change.rounds == 3
    assert change.estimate_pts == pytest.approx(-2.0)
    assert change.verdict == FELL  # -2 points every paired round


def test_the_report_and_the_waterfall_say_which_variants_did_not_learn():
    summary = read_summary(SERIES / "summary.json")
    quiet = [v.name for v in summary.variants if not v.learned]
    assert "+ema" in quiet and "+tta" in quiet and "+resnet9" not in quiet
    report = render_report(summary)
    assert "did not learn at this scale)" in report  # in the ema step's time verdict
    labels = marked_labels(["baseline", *[s.name for s in summary.steps], "final"], summary, " ")
    assert "ema (did not learn)" in labels and labels[-1] == "final (did not learn)"
    assert labels[0] == "baseline"


def test_a_fall_is_named_in_the_reading_and_under_its_bar():
    summary = read_summary(SERIES / "summary.json")
    fell = AccuracyChange(
        estimate_pts=-8.4,
        low_pts=-12.0,
        high_pts=-4.8,
        significant=True,
        verdict=FELL,
        rounds=3,
    )
    steps = [
        dataclasses.replace(s, accuracy_change=fell) if s.name == "frozen_bn_scale" else s
        for s in summary.steps
    ]
    summary = dataclasses.replace(summary, steps=steps)
    report = render_report(summary)
    assert "- Accuracy fell significantly (paired within rounds) at: frozen_bn_scale " in report
    assert "-8.4 pts [-12.0, -4.8], fell" in report
    labels = marked_labels(["baseline", *[s.name for s in steps], "final"], summary, " ")
    assert "frozen_bn_scale (accuracy fell)" in labels
