"""A step the article did not make, registered for one test and gone after it: what a user's
own step does to the registry, the docs' tables (`lab.doctables`) and the registry's tests.
It lives in the tests only: no job, report or committed page ever holds it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.recipe import registry

NAME = "double_epochs"
# The file a user would add to ablations/ (docs/writing-a-step.md, "A step the article did
# not make"), written to a temporary folder instead.
SOURCE = '''"""Train twice as long: twice the epochs, on the same schedule stretched to them.

Not in the article: a throw-away step of the tests, which register it for one test.
What changes: `epochs` x 2, and `lr_knots` stretched to them (the schedule's shape kept).
Why it should cost time: twice the training steps, twice the evaluations.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="double_epochs",
    title="Twice the epochs",
    changes="epochs: doubled; lr_knots: stretched to them",
    expects={"epochs": "up", "train_steps": "up"},
)
def apply(config: Config) -> Config:
    epochs = config.epochs * 2
    knots = config.schedule.scaled_to(epochs).knots
    return dataclasses.replace(config, epochs=epochs, lr_knots=knots)
'''


@contextmanager
def step_outside_the_article(folder: Path) -> Iterator[registry.Step]:
    """Register `double_epochs` from a module file in `folder`; afterwards the registry, the
    module table and the import path are as they were."""
    module = f"lab_test_{NAME}"
    (folder / f"{module}.py").write_text(SOURCE)
    saved = dict(registry._REGISTRY)
    sys.path.insert(0, str(folder))
    try:
        importlib.import_module(module)
        yield next(step for step in registry.all_steps() if step.name == NAME)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
