"""What a job will run, computed without training: variants, configs, sizes and counters."""

from __future__ import annotations

import functools
from typing import Any

from lab.recipe.config import Config
from lab.recipe.variant import Variant
from lab.recipe.workload import (
    expected_rng_calls,
    expected_worker_launches,
    steps_per_pass,
    subset_sizes,
    trained_samples,
)
from lab.records.floor import floor_seconds
from lab.train.data import IMAGE_SHAPE
from lab.train.network import (
    build_network,
    count_parameters,
    flops_per_image,
    forward_flops_per_image,
    network_fields,
)

# Forward passes per test image of each `tta` (the trainer counts them: `eval_views`).
EVAL_VIEWS = {"none": 1, "flip": 2, "multicrop": 6}


@functools.cache
def _size(network: Config) -> tuple[int, int]:
    return count_parameters(build_network(network)), flops_per_image(network)


@functools.cache
def _forward(network: Config) -> int:
    return forward_flops_per_image(network)


def source_rule_flops(config: Config, train_size: int, test_size: int) -> float:
    """A run's FLOPs on chapter 2's rule (cifar10-zoo `calc_flops.py`): every training image of
    every epoch, none dropped, forward and backward, plus the final evaluation's views. Its
    MAC counter also counts BatchNorm, activations and pools (not the classifier), which this
    conv/matmul count leaves out: docs/series.md gives the gap, ~1-3%."""
    _, train = network_size(config)
    views = EVAL_VIEWS[config.tta] * test_size
    return train * train_size * config.epochs + _forward(network_fields(config)) * views


def network_size(config: Config) -> tuple[int, int]:
    """(trainable parameters, forward+backward FLOPs per image), counted once per network
    (counting FLOPs takes ~1 s): variants that differ in other fields share the count."""
    return _size(network_fields(config))


def plan_entry(variant: Variant, peak_tflops: float | None = None) -> dict[str, Any]:
    """What `--plan --json` prints for a variant; `floor_s` only when a peak is given."""
    config = variant.config
    params, flops = network_size(config)
    train_size, test_size = subset_sizes(config)
    trained = sum(trained_samples(config, train_size))
    total_flops = flops * trained  # training only, as the article counts
    floor = (
        {"floor_s": floor_seconds(total_flops, peak_tflops), "peak_tflops": peak_tflops}
        if peak_tflops
        else {}
    )
    return {
        "name": variant.name,
        "steps": list(variant.steps),
        "config": config.to_dict(),
        "params": params,
        "flops_per_image": flops,
        "train_images": train_size,
        "test_images": test_size,
        "image_shape": list(IMAGE_SHAPE),
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "train_steps": sum(steps_per_pass(config, train_size)),
        "trained_images": trained,
        "expected_worker_launches": expected_worker_launches(config),
        "expected_rng_calls": expected_rng_calls(config, train_size),
        "total_flops": total_flops,
        "source_rule_flops": source_rule_flops(config, train_size, test_size),
        "eval_views": EVAL_VIEWS[config.tta],
        **floor,
    }
