"""Chapter 2's hyperparameters as its sources write them, turned into config data.

airbench (cifar10-zoo `airbench/ablations/`, `airbench94.py`) writes its learning rate and weight
decay "per 1024 examples", decoupled from the momentum and from each other: with Nesterov
momentum mu, a summed loss and kilostep_scale = 1024 (1 + 1 / (1 - mu)), PyTorch's SGD gets
lr_torch = lr / kilostep_scale (per summed example) and weight_decay = (wd x batch /
kilostep_scale) / lr_torch. The lab's rates are those of a mean loss (`Config.lr_knots`), so a
step writes

    rate = lr_torch x batch = lr x batch / kilostep_scale,    weight_decay = wd / lr,

which is the same update: rate / batch per summed example, and a decay of rate x weight_decay =
wd x batch / kilostep_scale per step. Its schedule is triangular per step: from `start` x the
peak at step 0 to the peak at `warmup` of the run's steps, then linearly to `end` x the peak.

A step writes its source's batch; a scaled preset cuts it by `batch_scale` (rounded) and the
rates by the same ratio, so the per-example rate and the steps per epoch stay the source's
(docs/presets.md, "Chapter 2 at a CPU scale"). Epochs scale by `epoch_scale` as the article's do.
"""

from __future__ import annotations

import dataclasses

from lab.recipe.config import Config

KILO = 1024  # airbench's hyperparameters are per this many examples


def kilostep_scale(momentum: float) -> float:
    """How much larger than a gradient a Nesterov step of constant gradients is, per 1024
    examples: 1024 (1 + 1 / (1 - momentum))."""
    return KILO * (1 + 1 / (1 - momentum))


def decoupled_rate(lr: float, batch: int, momentum: float) -> float:
    """The mean-loss rate of airbench's decoupled `lr` at `batch` (see the module's text)."""
    return lr * batch / kilostep_scale(momentum)


def run_batch(config: Config, batch: int) -> int:
    """The source's batch at this run's scale: batch x `batch_scale`, rounded, at least 1."""
    return max(1, round(batch * config.batch_scale))


def with_source_run(
    config: Config,
    *,
    batch: int,
    epochs: float,
    peak: float,
    warmup: float,
    start: float,
    end: float,
) -> Config:
    """The source's batch, epochs and triangular schedule (`peak` the mean-loss rate at
    `batch`; `warmup` the peak's place as a fraction of the run; `start`, `end` fractions of
    the peak), at this run's scale: the batch x `batch_scale`, the rates x the batch's own
    ratio, the epochs x `epoch_scale`."""
    size = run_batch(config, batch)
    rate = peak * size / batch
    length = epochs * config.epoch_scale
    knots = [(0.0, start * rate)]
    if warmup > 0:
        knots.append((warmup * length, rate))
    knots.append((length, end * rate))
    return dataclasses.replace(
        config,
        batch_size=size,
        source_batch_size=batch,
        epochs=length,
        lr_knots=tuple(knots),
    )


def with_source_epochs(config: Config, epochs: float) -> Config:
    """The source's new epoch count (x `epoch_scale`), the schedule's shape kept: its knots
    stretched to the new length (a chain step that only cuts epochs)."""
    length = epochs * config.epoch_scale
    return dataclasses.replace(
        config, epochs=length, lr_knots=config.schedule.scaled_to(length).knots
    )
