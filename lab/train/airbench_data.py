"""airbench's data path (`data_path="airbench"`; docs/series.md, chapter 2): the whole set as one
tensor on the training device, each image augmented on its own every epoch, no DataLoader.

Preprocessing, once: uint8 images -> the device -> the input dtype -> normalise -> NCHW. Every
epoch, inside the timed region (it is the first batch's wait, as the device path's is):
  1. with `flip_mode="alternating"`, on the first epoch only, each image is mirrored or not by one
     draw per image, and the set is reflect-padded by `translate` pixels once, kept for the
     run; later epochs mirror the *whole* kept set on odd epochs, so every image is seen both
     ways in every two epochs (airbench's `main7_mirror`) with no further flip draws;
     with `flip_mode="random"` the padded set is kept and each epoch draws one flip per image;
  2. one shift per image and axis in [-translate, translate] (a random 32x32 crop of the
     padded image; `translate=0`: no crop, no draw);
  3. a permutation, and batches of `batch_size` gathered from it (the last, smaller one
     dropped with `drop_last`).

Unlike Page's device path (lab/train/device_data.py), no choice is shared by a group of
images: every image has its own shift and flip, as airbench's `batch_crop`/`batch_flip_lr`.
Test batches are the normalised test set in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from lab.recipe.config import Config
from lab.recipe.workload import CROP, batches_per_epoch
from lab.train.data import Cifar
from lab.train.device_data import normalise
from lab.train.pipeline import Batch
from lab.train.precision import Placement
from lab.train.rng import CountingRng


def crop_per_image(padded: torch.Tensor, shifts: torch.Tensor, size: int) -> torch.Tensor:
    """A size x size crop of each padded image at its own (dy, dx) in [-r, r], r the padding:
    rows first, then columns, one masked copy per shift value of each axis (2 (2r + 1) copies,
    not one per image)."""
    radius = (padded.shape[-1] - size) // 2
    rows = padded.new_empty((len(padded), padded.shape[1], size, padded.shape[-1]))
    for shift in range(-radius, radius + 1):
        mask = shifts[:, 0] == shift
        rows[mask] = padded[mask, :, radius + shift : radius + shift + size, :]
    out = padded.new_empty((len(padded), padded.shape[1], size, size))
    for shift in range(-radius, radius + 1):
        mask = shifts[:, 1] == shift
        out[mask] = rows[mask, :, :, radius + shift : radius + shift + size]
    return out


def flip_per_image(images: torch.Tensor, rng: CountingRng) -> torch.Tensor:
    """Each image mirrored with probability 1/2: one draw per image, in one call."""
    mirrored = (rng.rand((len(images),)) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mirrored, images.flip(-1), images)


class AirbenchPipeline:
    """airbench's device-side pipeline (a `Pipeline`; no worker processes)."""

    first_batch_queues_device_work = True  # the epoch's crops and flips
    worker_launches = 0

    def __init__(self, config: Config, data: Cifar, placement: Placement) -> None:
        self.config = config
        device, dtype = placement.device, placement.input_dtype
        self.generator_device = device
        start = time.perf_counter()
        self.train = normalise(data.train_images, device, dtype)
        self.train_labels = torch.from_numpy(data.train_labels.astype(np.int64)).to(device)
        self.test = normalise(data.test_images, device, dtype)
        self.test_labels = torch.from_numpy(data.test_labels.astype(np.int64)).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the copies are asynchronous: time them, not launches
        self.preprocess_s = time.perf_counter() - start
        self.kept: torch.Tensor | None = None  # the padded (and, alternating, pre-flipped) set
        self.epochs_drawn = 0

    @property
    def train_size(self) -> int:
        return len(self.train_labels)

    @property
    def test_size(self) -> int:
        return len(self.test_labels)

    @property
    def steps_per_epoch(self) -> int:
        return batches_per_epoch(self.config, self.train_size)

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        pad = self.config.translate
        return F.pad(images, (pad,) * 4, mode="reflect") if pad else images

    def augmented(self, rng: CountingRng) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's augmented training set, in the set's order, and its permutation."""
        alternating = self.config.flip_mode == "alternating"
        if self.kept is None:
            first = flip_per_image(self.train, rng) if alternating else self.train
            self.kept = self._pad(first)
        images = self.kept
        if self.config.translate:
            radius = self.config.translate
            shifts = rng.randint(2 * radius + 1, (len(images), 2)) - radius
            images = crop_per_image(images, shifts, CROP)
        if alternating and self.epochs_drawn % 2 == 1:
            images = images.flip(-1)
        elif not alternating:
            images = flip_per_image(images, rng)
        self.epochs_drawn += 1
        return images, rng.randperm(self.train_size)

    def _train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        rng = CountingRng(generator)
        images, order = self.augmented(rng)
        calls = torch.tensor([rng.calls], dtype=torch.int64)
        size = self.config.batch_size
        for index in range(self.steps_per_epoch):
            chosen = order[index * size : (index + 1) * size]
            yield images[chosen], self.train_labels[chosen], calls
            calls = torch.zeros(1, dtype=torch.int64)

    def epoch(self, generator: torch.Generator) -> tuple[Iterator[Batch], int]:
        """The epoch's batches; its RNG calls come with the first (none are made up front)."""
        return self._train_batches(generator), 0

    def test_batches(self) -> Iterator[Batch]:
        no_calls = torch.zeros(1, dtype=torch.int64)
        for start in range(0, self.test_size, self.config.test_batch_size):
            end = start + self.config.test_batch_size
            yield self.test[start:end], self.test_labels[start:end], no_calls
