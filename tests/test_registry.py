"""Every registered step, automatically: it changes the config, its variant trains on the smoke
preset on real data, and its exact counters move the way its docstring says.

Counters that are exact (parameters, worker launches, RNG calls, one-off preprocessing, zeros)
are asserted here; timing-based ones (CPU seconds, images/s) are too noisy for a unit test and
are checked, and flagged, in every report instead.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lab.data import subset
from lab.errors import LabError
from lab.plan import plan_entry
from lab.presets import PRESETS
from lab.registry import (
    LEAVE_ONE_OUT,
    all_steps,
    apply_steps,
    cumulative_variants,
    get_steps,
    leave_one_out_variants,
)
from lab.summary import _expectation_holds
from lab.trainer import run_training
from tests.conftest import STEP_NAMES

STEPS = all_steps()
EXACT = {"params", "worker_launches", "rng_calls", "preprocess_s"}


def _counters(variant, data) -> dict[str, float]:
    result = run_training(variant.config, data, torch.device("cpu"), seed=0)
    entry = plan_entry(variant)
    assert result.worker_launches == entry["expected_worker_launches"]
    assert result.rng_calls == entry["expected_rng_calls"]
    return {
        "params": entry["params"],
        "worker_launches": result.worker_launches,
        "rng_calls": result.rng_calls,
        "preprocess_s": result.preprocess_s,
        "cpu_children_s": result.cpu_children_s,
    }


def test_registry_has_the_articles_six_steps_in_order():
    assert [s.name for s in STEPS] == STEP_NAMES
    assert all(s.story and s.title and s.changes for s in STEPS)
    assert [s.order for s in STEPS] == sorted({s.order for s in STEPS})  # unique, in order


def test_unknown_step_names_are_rejected_with_the_valid_ones():
    with pytest.raises(LabError, match="valid steps: bn_dedupe, smooth_lr"):
        get_steps(["bulk_rng", "warp_drive"])


def test_leave_one_out_variants_drop_exactly_one_step():
    base = PRESETS["smoke"].config
    variants = leave_one_out_variants(base, STEPS)
    assert [v.name for v in variants] == [f"-{s.name}" for s in STEPS[:-1]]
    for variant, left_out in zip(variants, STEPS, strict=False):
        assert variant.role == LEAVE_ONE_OUT
        assert list(variant.steps) == [s.name for s in STEPS if s is not left_out]
    # The last step has none: all steps but it are the chain's second-to-last variant.
    assert apply_steps(base, STEPS[:-1]) == cumulative_variants(base, STEPS)[-2].config


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_step(step, real_cifar):
    base = PRESETS["smoke"].config
    before, after = cumulative_variants(
        base, get_steps([s.name for s in STEPS if s.order <= step.order])
    )[-2:]
    changed = {
        f.name
        for f in dataclasses.fields(base)
        if getattr(after.config, f.name) != getattr(before.config, f.name)
    }
    # The step changes the config, and exactly the fields its `changes` line names.
    named = {name.strip() for name in step.changes.split(":")[0].split(",")}
    assert changed and changed == named, (step.name, changed, named)
    data = subset(real_cifar, base.train_images, base.test_images, base.subset_seed)
    measured_before, measured_after = _counters(before, data), _counters(after, data)
    for counter, expected in step.expects.items():
        if counter in EXACT or expected == "zero":
            assert _expectation_holds(
                expected, measured_before[counter], measured_after[counter]
            ), (counter, expected, measured_before[counter], measured_after[counter])
