"""Horizons counted in updates keep their fraction of training in a scaled preset (issue 24.3)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import ablations  # noqa: F401  (registers the steps)
from lab.recipe.horizons import (
    article_training_steps,
    article_weight_average_updates,
    run_bn_momentum,
    run_ema_rho,
)
from lab.recipe.horizons import weight_average_updates as updates
from lab.recipe.presets import PRESETS
from lab.recipe.registry import series_steps
from lab.recipe.variant import cumulative_variants
from lab.recipe.workload import FULL_TRAIN_SIZE, steps_per_pass, subset_sizes
from lab.train.data import subset
from lab.train.trainer import Trainer


def ema_variant(preset: str):
    """The `ema` variant of the full series at `preset`."""
    variants = cumulative_variants(PRESETS[preset].config, series_steps("full"))
    return next(v for v in variants if v.name.endswith("ema")).config


def test_updates_count_each_pass_from_its_first_step():
    config = dataclasses.replace(ema_variant("cpu-series-long"), ema_every=5)
    # 3.25 passes of 20 steps: 20, 20, 20, 5 steps; updates at steps 0, 5, 10, 15 of each.
    assert updates(config, 10_240) == 4 + 4 + 4 + 1
    # The article's ema variant: 13 epochs of 97 steps (the last batch dropped), 20 each.
    assert article_weight_average_updates(config) == 13 * 20


def test_the_article_scale_keeps_the_written_rho():
    config = dataclasses.replace(ema_variant("dawnbench"), horizons="scaled")
    assert run_ema_rho(config, FULL_TRAIN_SIZE) == config.ema_rho


def test_a_scaled_horizon_keeps_its_fraction_of_the_run():
    config = ema_variant("cpu-series-long")
    assert config.horizons == "scaled"
    train_size = subset_sizes(config)[0]
    rho = run_ema_rho(config, train_size)

    # The memory, in updates, shrinks by the ratio of the updates: the same share of the run.
    def memory(r: float) -> float:
        return -1 / math.log(r)

    share_article = memory(config.ema_rho) / article_weight_average_updates(config)
    share_run = memory(rho) / updates(config, train_size)
    assert share_run == pytest.approx(share_article, rel=1e-12)
    # ... and the freshly built network's weights are gone from the average by the run's end.
    assert rho ** updates(config, train_size) < 1e-4 < config.ema_rho ** updates(config, train_size)


def test_as_written_leaves_the_rho_alone():
    config = dataclasses.replace(ema_variant("cpu-series-long"), horizons="as_written")
    assert run_ema_rho(config, subset_sizes(config)[0]) == config.ema_rho


def test_scaled_presets_scale_their_horizons_and_the_article_does_not():
    assert PRESETS["dawnbench"].config.horizons == "as_written"
    for name in ("cpu", "cpu-series", "cpu-series-long", "smoke"):
        assert PRESETS[name].config.horizons == "scaled", name


def test_the_trainer_averages_with_the_runs_rho(real_cifar):
    # Two batches of 512 (smoke's 500 images hold none once the last batch is dropped).
    config = dataclasses.replace(ema_variant("smoke"), train_images=1024)
    part = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    trainer = Trainer(config, part, torch.device("cpu"), seed=0)
    expected = run_ema_rho(config, len(part.train_labels))
    assert expected < config.ema_rho
    assert trainer.ema is not None and trainer.ema.rho == expected == trainer.ema_rho


def test_batchnorm_statistics_keep_their_fraction_of_the_run():
    # Their memory, -1 / ln(1 - m) steps, is the same share of the article's steps and the run's.
    config = ema_variant("cpu-series-long")
    train_size = subset_sizes(config)[0]
    momentum = run_bn_momentum(config, train_size)

    def memory(m: float) -> float:
        return -1 / math.log(1 - m)

    run_steps = sum(steps_per_pass(config, train_size))
    assert article_training_steps(config) == 13 * 97  # 13 epochs, the last batch dropped
    assert memory(momentum) / run_steps == pytest.approx(
        memory(config.bn_momentum) / article_training_steps(config), rel=1e-12
    )
    assert config.bn_momentum < momentum < 1


def test_batchnorm_momentum_as_written_and_at_the_articles_scale():
    article = dataclasses.replace(ema_variant("dawnbench"), horizons="scaled")
    assert run_bn_momentum(article, FULL_TRAIN_SIZE) == pytest.approx(article.bn_momentum)
    written = dataclasses.replace(ema_variant("cpu-series-long"), horizons="as_written")
    assert run_bn_momentum(written, 10_240) == written.bn_momentum


def test_the_network_keeps_its_statistics_at_the_runs_momentum(real_cifar):
    config = dataclasses.replace(ema_variant("smoke"), train_images=1024)
    part = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    trainer = Trainer(config, part, torch.device("cpu"), seed=0)
    expected = run_bn_momentum(config, len(part.train_labels))
    norms = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and {m.momentum for m in norms} == {expected} == {trainer.bn_momentum}
    assert expected > config.bn_momentum
