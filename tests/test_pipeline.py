"""The pipelines: the cached path must produce exactly what the original per-sample path does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lab.recipe.config import Config
from lab.train.device_data import DevicePipeline
from lab.train.pipeline import (
    BulkChoices,
    CachedTestSet,
    CachedTrainSet,
    Choice,
    PerSampleChoices,
    PerSampleTestSet,
    PerSampleTrainSet,
    Pipeline,
    build_loader_pipeline,
    preprocess,
)
from lab.train.precision import Placement


class FixedChoices:
    """The same crop, flip and cutout for both pipelines, so their outputs can be compared."""

    rng_calls_per_epoch = 0

    def __init__(self, top: int, left: int, flip: bool, cutout_at=None, cutout=0) -> None:
        self.choice = Choice(top, left, flip, cutout_at, 0)
        self.cutout = cutout

    def new_epoch(self, size, generator) -> None:
        pass

    def __call__(self, index):
        return self.choice


@pytest.fixture(scope="module")
def images(real_cifar):
    return real_cifar.train_images[:16], real_cifar.train_labels[:16]


@pytest.fixture(scope="module")
def sixteen(real_cifar, images):
    """The dataset object cut to the same 16 images as train and test set."""
    pixels, labels = images
    return dataclasses.replace(
        real_cifar, train_images=pixels, train_labels=labels, test_images=pixels, test_labels=labels
    )


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


def test_cutout_is_the_same_square_in_both_paths_and_spares_the_cache(images):
    pixels, labels = images
    choices = FixedChoices(2, 6, True, cutout_at=(3, 20), cutout=8)
    padded = preprocess(pixels, 4)
    kept = padded.copy()
    a = PerSampleTrainSet(pixels, labels, choices)[1][0]
    b = CachedTrainSet(padded, labels, choices)[1][0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (b[:, 3:11, 20:28] == 0).all() and (b[:, 11:, :] != 0).any()
    assert np.array_equal(padded, kept)  # the square is written into a copy


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


def test_per_sample_choices_make_three_rng_calls_each_five_with_cutout():
    choice = PerSampleChoices(cutout=0)(0)
    assert choice.rng_calls == 3 and 0 <= choice.top <= 8 and 0 <= choice.left <= 8
    assert choice.cutout_at is None
    with_cutout = PerSampleChoices(cutout=8)(0)
    assert with_cutout.rng_calls == 5 and all(0 <= x <= 24 for x in with_cutout.cutout_at)


def test_bulk_choices_draw_once_per_epoch_and_cover_the_range():
    choices = BulkChoices(cutout=0)
    choices.new_epoch(10_000, torch.Generator().manual_seed(0))
    assert choices.rng_calls_per_epoch == 3
    assert set(np.unique(choices.tops)) == set(range(9))
    assert 0.45 < choices.flips.mean() < 0.55
    assert choices(5).rng_calls == 0
    with_cutout = BulkChoices(cutout=5)
    with_cutout.new_epoch(10_000, torch.Generator().manual_seed(0))
    assert with_cutout.rng_calls_per_epoch == 5
    assert set(np.unique(with_cutout.cutout_tops)) == set(range(28))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_counts_worker_launches_and_rng_calls(sixteen, workers):
    config = Config(batch_size=8, test_batch_size=8, train_workers=workers, test_workers=workers)
    placement = Placement.from_config(config, torch.device("cpu"))
    pipeline = build_loader_pipeline(config, sixteen, placement, seed=0)
    batches, up_front = pipeline.epoch(torch.Generator().manual_seed(0))
    calls = sum(int(batch[2].sum()) for batch in batches)
    list(pipeline.test_batches())
    assert up_front == 0 and calls == 3 * len(sixteen.train_labels)
    assert pipeline.worker_launches == 2 * workers


def test_both_data_paths_are_pipelines_over_the_same_dataset(sixteen):
    """The trainer sees one interface (`Pipeline`): built from the same dataset object, the
    loader and the device pipeline give the same sizes, an epoch of the training set's labels
    in full batches, and the test set in order."""
    config = Config(batch_size=8, test_batch_size=8, train_workers=0, test_workers=0)
    placement = Placement.from_config(config, torch.device("cpu"))
    loader = build_loader_pipeline(config, sixteen, placement, seed=0)
    device = DevicePipeline(config, sixteen, placement)
    members = [name for name in vars(Pipeline) if not name.startswith("_")]
    assert "epoch" in members and "worker_launches" in members
    tests = []
    for pipeline in (loader, device):
        assert all(hasattr(pipeline, name) for name in members)
        assert (pipeline.train_size, pipeline.test_size, pipeline.steps_per_epoch) == (16, 16, 2)
        batches, _ = pipeline.epoch(torch.Generator(pipeline.generator_device).manual_seed(0))
        epoch = list(batches)
        assert [tuple(images.shape) for images, _, _ in epoch] == [(8, 3, 32, 32)] * 2
        labels = torch.cat([labels for _, labels, _ in epoch]).sort().values
        assert labels.tolist() == sorted(sixteen.train_labels.tolist())
        tests.append(list(pipeline.test_batches()))
        assert pipeline.worker_launches == 0
    assert not loader.first_batch_queues_device_work and device.first_batch_queues_device_work
    for (a, label_a, _), (b, label_b, _) in zip(*tests, strict=True):
        assert torch.equal(label_a, label_b)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preprocessing", ["per_sample", "cached"])
def test_traced_workers_build_the_same_batches_and_record_them(sixteen, tmp_path, preprocessing):
    """A pipeline built while a profiled pass asks for the workers' timeline gives the batches
    an untraced one gives (same shuffle, same per-worker RNG draws), and each worker wrote its
    start-up and one fetch, augment and collate record per batch it built, in that order; a
    pipeline built outside the request wraps nothing."""
    from lab.train.worker_trace import TracedDataset, read_worker_events, tracing_workers_to

    config = Config(
        batch_size=4,
        test_batch_size=8,
        train_workers=2,
        test_workers=2,
        preprocessing=preprocessing,
    )
    placement = Placement.from_config(config, torch.device("cpu"))
    plain = build_loader_pipeline(config, sixteen, placement, seed=0)
    with tracing_workers_to(tmp_path):
        traced = build_loader_pipeline(config, sixteen, placement, seed=0)
    assert not isinstance(plain.train_loader.dataset, TracedDataset)
    assert isinstance(traced.train_loader.dataset, TracedDataset)
    epochs = []
    for pipeline in (plain, traced):
        batches, _ = pipeline.epoch(torch.Generator().manual_seed(0))
        epochs.append(list(batches) + list(pipeline.test_batches()))
    for a, b in zip(*epochs, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert traced.worker_launches == 4  # the launch counter still runs in the traced workers
    records = read_worker_events(tmp_path)
    assert len({r["pid"] for r in records}) == 4
    train = [r for r in records if r["loader"] == "train"]
    assert [r["name"] for r in train].count("fetch") == len(sixteen.train_labels) // 4
    for pid in {r["pid"] for r in train}:
        own = sorted((r for r in train if r["pid"] == pid), key=lambda r: r["start_ns"])
        assert own[0]["name"] == "worker start"
        assert [r["name"] for r in own[1:4]] == ["fetch", "augment", "collate"]
        assert all(a["end_ns"] <= b["start_ns"] for a, b in zip(own, own[1:], strict=False))
        assert sum(r["samples"] for r in own if r["name"] == "fetch") >= 4
    test_names = {r["name"] for r in records if r["loader"] == "test"}
    assert test_names == {"worker start", "fetch", "transform", "collate"}
