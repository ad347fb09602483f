"""The pipelines: the cached path must produce exactly what the original per-sample path does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.config import Config
from lab.pipeline import (
    BulkChoices,
    CachedTestSet,
    CachedTrainSet,
    PerSampleChoices,
    PerSampleTestSet,
    PerSampleTrainSet,
    build_pipeline,
    preprocess,
)


class FixedChoices:
    """The same crop and flip for both pipelines, so their outputs can be compared."""

    rng_calls_per_epoch = 0

    def __init__(self, top: int, left: int, flip: bool) -> None:
        self.choice = (top, left, flip, 0)

    def new_epoch(self, size, generator) -> None:
        pass

    def __call__(self, index):
        return self.choice


@pytest.fixture(scope="module")
def images(real_cifar):
    return real_cifar.train_images[:16], real_cifar.train_labels[:16]


@pytest.mark.parametrize(
    "top,left,flip", [(0, 0, False), (4, 4, False), (8, 1, True), (3, 8, True)]
)
def test_cached_train_path_equals_the_original(images, top, left, flip):
    pixels, labels = images
    choices = FixedChoices(top, left, flip)
    original = PerSampleTrainSet(pixels, labels, choices)
    cached = CachedTrainSet(preprocess(pixels, 4), labels, choices)
    for index in range(len(pixels)):
        a, label_a, _ = original[index]
        b, label_b, _ = cached[index]
        assert a.shape == b.shape == (3, 32, 32)
        assert label_a == label_b
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cached_test_path_equals_the_original(images):
    pixels, labels = images
    original, cached = (
        PerSampleTestSet(pixels, labels),
        CachedTestSet(preprocess(pixels, 0), labels),
    )
    torch.testing.assert_close(original[3][0], cached[3][0], atol=1e-5, rtol=1e-5)


def test_centre_crop_without_flip_is_the_image_itself(images):
    pixels, labels = images
    sample = PerSampleTrainSet(pixels, labels, FixedChoices(4, 4, False))[0][0]
    expected = PerSampleTestSet(pixels, labels)[0][0]
    torch.testing.assert_close(sample, expected)


def test_per_sample_choices_make_three_rng_calls_each():
    choices = PerSampleChoices()
    top, left, flip, calls = choices(0)
    assert calls == 3 and 0 <= top <= 8 and 0 <= left <= 8 and isinstance(flip, bool)


def test_bulk_choices_draw_once_per_epoch_and_cover_the_range():
    choices = BulkChoices()
    choices.new_epoch(10_000, torch.Generator().manual_seed(0))
    assert choices.rng_calls_per_epoch == 3
    assert set(np.unique(choices.tops)) == set(range(9))
    assert 0.45 < choices.flips.mean() < 0.55
    assert choices(5)[3] == 0


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_counts_worker_launches_and_rng_calls(images, workers):
    pixels, labels = images
    config = Config(batch_size=8, test_batch_size=8, train_workers=workers, test_workers=workers)
    pipeline = build_pipeline(config, pixels, labels, pixels, labels, seed=0, pin_memory=False)
    calls = sum(int(batch[2].sum()) for batch in pipeline.train_loader)
    list(pipeline.test_loader)
    assert calls == 3 * len(pixels)
    assert pipeline.launches.value == 2 * workers
