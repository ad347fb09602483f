"""Horizons counted in updates, and how a scaled preset keeps them a fraction of training.

A scaled preset shrinks the run (fewer images, fewer epochs) and the steps' epoch counts and
learning-rate knots with it (`epoch_scale`), so a step that cuts 14 to 13 epochs cuts the same
share of the run at any scale. A horizon counted in optimiser steps or updates does not
shrink by itself: the weight EMA's memory, rho = 0.99^5 per update, is ~20 updates long, a
tenth of the article's 260 updates over 13 epochs of 97 steps (updated every 5), but longer
than the whole run at `cpu-series-long` (13 updates). There the evaluated average still holds
half of the freshly built network's weights, and the `ema` step reads as a recipe that does
not learn.

With `horizons="scaled"` the run keeps each such horizon's length as a fraction of its
training: the EMA's memory is n_article / n_run times shorter, so rho_run =
rho ** (n_article / n_run), where n counts the EMA's updates (every `ema_every` steps,
restarting each pass) of the run and of the article's (the full 50,000 images, the run's
epochs / `epoch_scale`, the same batch size). The cadence, `ema_every`, stays as written: it
sets the EMA's cost per step, which the timing must keep. At the article's scale the two
counts are equal and rho is the one written. `horizons="as_written"` (the default) leaves
every horizon as the step wrote it.
"""

from __future__ import annotations

import dataclasses
import math

from lab.recipe.config import Config
from lab.recipe.workload import FULL_TRAIN_SIZE, steps_per_pass


def weight_average_updates(config: Config, train_size: int) -> int:
    """The EMA's updates in a run: one at each pass's step 0, ema_every, 2 ema_every, ..."""
    return sum(math.ceil(steps / config.ema_every) for steps in steps_per_pass(config, train_size))


def article_weight_average_updates(config: Config) -> int:
    """The same count for the article's run of this recipe: every image, its own epochs."""
    return weight_average_updates(_article_run(config), FULL_TRAIN_SIZE)


def run_ema_rho(config: Config, train_size: int) -> float:
    """The EMA's rho this run uses: as written, or its memory scaled with the run's updates."""
    if not config.ema_rho or config.horizons == "as_written":
        return config.ema_rho
    ratio = article_weight_average_updates(config) / weight_average_updates(config, train_size)
    return config.ema_rho**ratio


def run_bn_momentum(config: Config, train_size: int) -> float:
    """BatchNorm's running-statistics momentum this run uses: as written, or its memory kept
    the same fraction of the run's optimiser steps. The statistics forget at 1 - m per step,
    so (1 - m_run) = (1 - m) ** (n_article / n_run), n counting training steps."""
    if config.horizons == "as_written":
        return config.bn_momentum
    ratio = article_training_steps(config) / sum(steps_per_pass(config, train_size))
    return 1 - (1 - config.bn_momentum) ** ratio


def article_training_steps(config: Config) -> int:
    """Optimiser steps of the article's run of this recipe: every image, its own epochs."""
    return sum(steps_per_pass(_article_run(config), FULL_TRAIN_SIZE))


def _article_run(config: Config) -> Config:
    return dataclasses.replace(
        config,
        train_images=None,
        epochs=config.epochs / config.epoch_scale,
        epoch_scale=1.0,
        # A chapter-2 step's batch was cut by batch_scale: its source's run had the written one.
        batch_size=config.source_batch_size or config.batch_size,
    )
