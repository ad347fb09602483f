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
from lab.plan import plan_entry
from lab.presets import PRESETS
from lab.registry import all_steps, cumulative_variants, get_steps
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
        "final_accuracy": result.final_accuracy,
    }


def test_registry_has_the_articles_six_steps_in_order():
    assert [s.name for s in STEPS] == STEP_NAMES
    assert all(s.story and s.title and s.changes for s in STEPS)


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_step(step, real_cifar):
    base = PRESETS["smoke"].config
    before, after = cumulative_variants(
        base, get_steps([s.name for s in STEPS if s.order <= step.order])
    )[-2:]
    assert after.config != before.config, "a step must change the config"
    changed = {
        f.name
        for f in dataclasses.fields(base)
        if getattr(after.config, f.name) != getattr(before.config, f.name)
    }
    assert changed, step.name
    data = subset(real_cifar, base.train_images, base.test_images, base.subset_seed)
    measured_before, measured_after = _counters(before, data), _counters(after, data)
    assert 0.0 <= measured_after["final_accuracy"] <= 1.0
    for counter, expected in step.expects.items():
        if counter in EXACT or expected == "zero":
            assert _expectation_holds(
                expected, measured_before[counter], measured_after[counter]
            ), (counter, expected, measured_before[counter], measured_after[counter])
