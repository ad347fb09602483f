"""Every registered step, automatically: it changes the config, its variant trains on the smoke
preset on real data, and its exact counters move the way its docstring says.

Counters that are exact (parameters, worker launches, RNG calls, one-off preprocessing, zeros)
are asserted here; timing-based ones (CPU seconds, images/s) are too noisy for a unit test and
are checked, and flagged, in every report instead.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from lab.analysis.summary import _expectation_holds
from lab.engine.plan import plan_entry
from lab.errors import LabError
from lab.recipe import article
from lab.recipe.presets import PRESETS
from lab.recipe.registry import (
    LEAVE_ONE_OUT,
    all_steps,
    apply_steps,
    cumulative_variants,
    get_steps,
    leave_one_out_variants,
    series_steps,
)
from lab.train.data import subset
from lab.train.trainer import run_training

STEPS = all_steps()
# Counted, or (one-off preprocessing) moved by far more than timing noise.
EXACT = {"params", "worker_launches", "rng_calls", "train_steps", "epochs", "flops_per_image"}
EXACT |= {"preprocess_s"}
# Parts 2-8 change batch sizes (512, 768) and cut epochs by a step or two out of ten: on the
# smoke preset's 500 images there would be no batch to drop and nothing to cut.
SERIES_BASE = dataclasses.replace(PRESETS["smoke"].config, train_images=1100)


_MEASURED: dict[tuple, dict[str, float]] = {}


def _counters(variant, data) -> dict[str, float]:
    """Train the variant once per test session (a step's "after" is the next one's "before")."""
    key = (variant.config, len(data.train_labels))
    if key not in _MEASURED:
        _MEASURED[key] = _measure(variant, data)
    return _MEASURED[key]


def _measure(variant, data) -> dict[str, float]:
    result = run_training(variant.config, data, torch.device("cpu"), seed=0)
    entry = plan_entry(variant)
    assert result.worker_launches == entry["expected_worker_launches"]
    assert result.rng_calls == entry["expected_rng_calls"]
    assert result.train_steps == entry["train_steps"]
    return {
        "params": entry["params"],
        "train_steps": result.train_steps,
        "epochs": variant.config.epochs,
        "flops_per_image": entry["flops_per_image"],
        "worker_launches": result.worker_launches,
        "rng_calls": result.rng_calls,
        "preprocess_s": result.preprocess_s,
        "cpu_children_s": result.cpu_children_s,
    }


def test_registry_has_the_series_steps_in_the_articles_order():
    """The registry owns the order; it follows the article: every step of the series after the
    baseline is taken, by one or more of the lab's steps, in the article's sequence."""
    numbers = [s.article_step for s in STEPS]
    assert numbers == sorted(numbers)
    assert set(numbers) == {step.number for step in article.STEPS} - {0}
    assert [s.part for s in STEPS] == [1] * 6 + [2, 3, 3, 3, 4] + [8] * 9
    assert all(s.story and s.title and s.changes for s in STEPS)
    assert [s.order for s in STEPS] == sorted({s.order for s in STEPS})  # unique, in order
    assert series_steps("full") == STEPS
    assert series_steps("part1") == [s for s in STEPS if s.part == 1]


def test_unknown_step_names_are_rejected_with_the_valid_ones():
    with pytest.raises(LabError, match=f"valid steps: {STEPS[0].name}, {STEPS[1].name}"):
        get_steps(["bulk_rng", "warp_drive"])


def test_leave_one_out_variants_drop_exactly_one_step():
    base, steps = PRESETS["smoke"].config, series_steps("part1")
    variants = leave_one_out_variants(base, steps)
    assert [v.name for v in variants] == [f"-{s.name}" for s in steps[:-1]]
    for variant, left_out in zip(variants, steps, strict=False):
        assert variant.role == LEAVE_ONE_OUT
        assert list(variant.steps) == [s.name for s in steps if s is not left_out]
    # The last step has none: all steps but it are the chain's second-to-last variant.
    assert apply_steps(base, steps[:-1]) == cumulative_variants(base, steps)[-2].config


def test_a_step_later_steps_need_has_no_leave_one_out_variant():
    variants = leave_one_out_variants(SERIES_BASE, STEPS)
    # Ghost BatchNorm needs the device pipeline's dropped last batch.
    expected = [f"-{s.name}" for s in STEPS[:-1] if s.name != "gpu_augmentation"]
    assert [v.name for v in variants] == expected


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_step(step, real_cifar):
    base = PRESETS["smoke"].config if step.part == 1 else SERIES_BASE
    before, after = cumulative_variants(
        base, get_steps([s.name for s in STEPS if s.order <= step.order])
    )[-2:]
    changed = {
        f.name
        for f in dataclasses.fields(base)
        if getattr(after.config, f.name) != getattr(before.config, f.name)
    }
    # The step changes the config, and exactly the config fields its `changes` line names.
    named = {f.name for f in dataclasses.fields(base) if re.search(rf"\b{f.name}\b", step.changes)}
    assert changed and changed == named, (step.name, changed, named)
    data = subset(real_cifar, base.train_images, base.test_images, base.subset_seed)
    measured_before, measured_after = _counters(before, data), _counters(after, data)
    for counter, expected in step.expects.items():
        if counter in EXACT or expected == "zero":
            assert _expectation_holds(
                expected, measured_before[counter], measured_after[counter]
            ), (counter, expected, measured_before[counter], measured_after[counter])
