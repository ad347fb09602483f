"""Every registered step, automatically: it changes the config, its variant trains on the smoke
preset on real data, and its exact counters move the way its docstring says.

Counters that are exact (parameters, worker launches, RNG calls, one-off preprocessing, zeros)
are asserted here; timing-based ones (CPU seconds, images/s) are too noisy for a unit test and
are checked, and flagged, in every report instead.
"""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest
import torch
from throwaway_step import NAME as OUTSIDE
from throwaway_step import step_outside_the_article

from lab.analysis.summary import _expectation_holds
from lab.engine.plan import plan_entry
from lab.errors import LabError
from lab.recipe import article, registry
from lab.recipe.presets import PRESETS
from lab.recipe.registry import all_steps, describe_series, get_steps, series_steps
from lab.recipe.variant import apply_steps, cumulative_variants, leave_one_out_variants
from lab.recipe.vocabulary import LEAVE_ONE_OUT
from lab.train.data import subset
from lab.train.trainer import run_training
from tests.conftest import SERIES_SMOKE

STEPS = all_steps()
PAGE = series_steps("full")  # chapter 1: Page's series
AIRBENCH = series_steps("airbench")  # chapter 2
# Counted, or (one-off preprocessing) moved by far more than timing noise.
EXACT = {"params", "worker_launches", "rng_calls", "train_steps", "epochs", "flops_per_image"}
EXACT |= {"preprocess_s"}
# Parts 2-8 change batch sizes (512, 768) and cut epochs by a step or two out of ten: on the
# smoke preset's 500 images there would be no batch to drop and nothing to cut.
SERIES_BASE = SERIES_SMOKE


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


def _assert_the_order_follows_the_article(steps):
    """Every step of the series after the baseline is taken, by one or more of the lab's
    steps, in the article's sequence (`lab.recipe.article`); a step the article did not make
    comes after them, by name. Nothing here is counted by hand: the article and the registry
    say how many steps there are."""
    in_article = [s for s in steps if s.article_step is not None]
    chapter1 = [s for s in in_article if s.article.chapter == 1]
    chapter2 = [s for s in in_article if s.article.chapter == 2]
    outside = [s for s in steps if s.article_step is None]
    # Page's steps, then any step outside the sources (it runs on his recipes), then airbench's.
    assert steps == chapter1 + outside + chapter2
    assert all(s.article_step is None and s.part is None for s in outside)
    assert [s.name for s in in_article] == list(article.LAB_ORDER)  # each once, in order
    assert [s.name for s in outside] == sorted(s.name for s in outside)
    numbers = [s.article_step for s in in_article]
    assert numbers == sorted(numbers)
    assert set(numbers) == {step.number for step in article.STEPS} - {0}
    assert [s.part for s in in_article] == [article.BY_NUMBER[n].part for n in numbers]
    assert all(s.story and s.title and s.changes for s in steps)
    assert [s.order for s in steps] == list(range(1, len(steps) + 1))
    assert series_steps("both") == steps
    assert series_steps("full") == chapter1 + outside
    assert series_steps("airbench") == chapter2
    assert series_steps("part1") == [s for s in in_article if s.part == 1]
    assert all(s.part is None and s.article.device == "A100" for s in chapter2)


def test_registry_has_the_series_steps_in_the_articles_order():
    """The registry owns the order; it follows the article."""
    _assert_the_order_follows_the_article(STEPS)


@pytest.fixture
def outside_step(tmp_path):
    """A throw-away step the article did not make (`tests/throwaway_step.py`), registered for
    one test."""
    with step_outside_the_article(tmp_path) as step:
        yield step


def test_a_step_outside_the_article_comes_after_the_articles(outside_step):
    steps = all_steps()
    _assert_the_order_follows_the_article(steps)
    assert steps == [*PAGE, outside_step, *AIRBENCH]
    assert outside_step.order == len(PAGE) + 1
    assert (outside_step.article, outside_step.article_saved_s) == (None, None)
    assert outside_step.article_shared_with == []
    assert outside_step.facts()["article_step"] is None
    assert outside_step.story.startswith("Train twice as long")
    assert get_steps([OUTSIDE, STEPS[0].name]) == [STEPS[0], outside_step]
    assert f"the series' {len(PAGE)} steps and 1 the article did not make" in describe_series(
        "full"
    )
    assert series_steps("part1") == [s for s in STEPS if s.part == 1]
    # Every step but one, each step in turn, with the new step last: it has none of its own.
    expected = [f"-{s.name}" for s in PAGE if s.name != "gpu_augmentation"]
    assert [v.name for v in leave_one_out_variants(SERIES_BASE, series_steps("full"))] == expected


def test_the_throwaway_step_is_gone_after_its_test(tmp_path):
    with step_outside_the_article(tmp_path):
        assert OUTSIDE in registry._REGISTRY
    assert all_steps() == STEPS
    assert not [name for name in sys.modules if OUTSIDE in name]


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
    variants = leave_one_out_variants(SERIES_BASE, PAGE)
    # Ghost BatchNorm needs the device pipeline's dropped last batch.
    expected = [f"-{s.name}" for s in PAGE[:-1] if s.name != "gpu_augmentation"]
    assert [v.name for v in variants] == expected


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_step(step, real_cifar):
    _check_step(step, STEPS, real_cifar)


def test_a_step_outside_the_article_is_tested_like_the_others(outside_step, real_cifar):
    _check_step(outside_step, all_steps(), real_cifar)


def _check_step(step, steps, real_cifar):
    """The step changes the config, exactly the fields its `changes` line names, and moves
    its exact counters as its `expects` says, trained after every step before it."""
    base = PRESETS["smoke"].config if step.part == 1 else SERIES_BASE
    before, after = cumulative_variants(
        base, get_steps([s.name for s in steps if s.order <= step.order])
    )[-2:]
    changed = {
        f.name
        for f in dataclasses.fields(base)
        if getattr(after.config, f.name) != getattr(before.config, f.name)
    }
    named = {f.name for f in dataclasses.fields(base) if re.search(rf"\b{f.name}\b", step.changes)}
    assert changed and changed == named, (step.name, changed, named)
    data = subset(real_cifar, base.train_images, base.test_images, base.subset_seed)
    measured_before, measured_after = _counters(before, data), _counters(after, data)
    for counter, expected in step.expects.items():
        if counter in EXACT or expected == "zero":
            assert _expectation_holds(
                expected, measured_before[counter], measured_after[counter]
            ), (counter, expected, measured_before[counter], measured_after[counter])
