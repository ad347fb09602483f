"""What a config asks of the machine, computed without torch: batches and optimiser steps per
pass, images trained on, worker launches and augmentation RNG draws, plus the augmentation's
constants. The plan (`--plan`) and both pipelines read these; the records measure the counters
where they happen, so the plan's expectations can be checked against them.
"""

from __future__ import annotations

import math

from lab.errors import LabError
from lab.recipe.config import Config

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the training set, in [0, 1]
CIFAR_STD = (0.2471, 0.2435, 0.2616)  # per-channel standard deviation, in [0, 1]
PAD = 4  # pixels of reflect padding before the random 32x32 crop
CROP = 32  # pixels: the crop's side, the images' own size
BULK_RNG_CALLS_PER_EPOCH = 3  # crop x offsets, crop y offsets, flips
CUTOUT_RNG_CALLS = 2  # the cutout square's top and left
FULL_TRAIN_SIZE = 50_000  # CIFAR-10's training images
FULL_TEST_SIZE = 10_000  # CIFAR-10's test images


def subset_sizes(config: Config) -> tuple[int, int]:
    """Images per split the config trains and tests on (the full set when not subset)."""
    train = min(config.train_images or FULL_TRAIN_SIZE, FULL_TRAIN_SIZE)
    test = min(config.test_images or FULL_TEST_SIZE, FULL_TEST_SIZE)
    return train, test


def per_sample_rng_calls(cutout: int) -> int:
    """RNG calls of one sample's per-sample choices: crop top, crop left, flip, and the
    cutout square's top and left when there is one."""
    return 3 + (CUTOUT_RNG_CALLS if cutout else 0)


def bulk_rng_calls_per_epoch(cutout: int) -> int:
    """Vectorised RNG calls of one epoch's bulk choices."""
    return BULK_RNG_CALLS_PER_EPOCH + (CUTOUT_RNG_CALLS if cutout else 0)


def device_transform_count(config: Config) -> int:
    """Transforms the device pipeline applies per epoch: crop, flip, and cutout when set."""
    return 2 + (1 if config.cutout else 0)


def device_rng_calls_per_epoch(config: Config) -> int:
    """Two draws per device transform (a permutation of the set, a shuffle of the options)
    and the final permutation."""
    return 2 * device_transform_count(config) + 1


def airbench_rng_calls(config: Config) -> int:
    """RNG calls of airbench's data path over a run (lab/train/airbench_data.py): per epoch a
    permutation and, with `translate`, one draw of every image's shifts; the flips in one call
    per epoch (random) or once, in the first (alternating)."""
    per_epoch = 1 + (1 if config.translate else 0)
    flips = 1 if config.flip_mode == "alternating" else passes(config)
    return per_epoch * passes(config) + flips


def passes(config: Config) -> int:
    """Passes over the training set: a fractional epoch count rounds up (the last pass is cut)."""
    return math.ceil(config.epochs - 1e-9)


def batches_per_epoch(config: Config, train_size: int) -> int:
    """Training batches in a whole pass: the last, smaller one counts unless dropped."""
    if config.drop_last:
        return train_size // config.batch_size
    return math.ceil(train_size / config.batch_size)


def steps_per_pass(config: Config, train_size: int) -> list[int]:
    """Optimiser steps of each pass: full passes take every batch, a last fractional pass
    that fraction of them, rounded, and at least one."""
    full = batches_per_epoch(config, train_size)
    if full == 0:
        raise LabError(
            f"train_images={train_size} is fewer than batch_size={config.batch_size} with "
            "drop_last=true: no training batch; use --set train_images=... or a larger preset"
        )
    steps = []
    for index in range(passes(config)):
        fraction = min(1.0, config.epochs - index)
        steps.append(full if fraction >= 1.0 else max(1, round(fraction * full)))
    return steps


def trained_samples(config: Config, train_size: int) -> list[int]:
    """Images trained on in each pass (a dropped or cut batch is not trained on)."""
    return [
        min(steps * config.batch_size, train_size) for steps in steps_per_pass(config, train_size)
    ]


def expected_worker_launches(config: Config) -> int:
    """Worker processes the config implies: every pass over each loader starts its workers."""
    if config.data_path in ("device", "airbench"):
        return 0
    return passes(config) * (config.train_workers + config.test_workers)


def expected_rng_calls(config: Config, train_size: int) -> int:
    """Augmentation RNG calls the config implies over a whole run."""
    if config.data_path == "device":
        return device_rng_calls_per_epoch(config) * passes(config)
    if config.data_path == "airbench":
        return airbench_rng_calls(config)
    if config.augment_rng == "bulk":
        return bulk_rng_calls_per_epoch(config.cutout) * passes(config)
    return per_sample_rng_calls(config.cutout) * sum(trained_samples(config, train_size))
