"""The whole data set as one tensor on the training device, augmented in groups once per epoch
(Page's Part 8, `bag_of_tricks.ipynb` cell 10 `Batches`/`transformed`; docs/article.md,
`gpu_augmentation`). Chosen by `data_path="device"`; there is no DataLoader and no worker.

Preprocessing, once: uint8 images -> the device -> float -> normalise -> NCHW; the training
images then get a 4-pixel reflect pad (40x40). Every epoch, for each transform in order (random
32x32 crop, horizontal flip, cutout when `cutout` > 0):
  1. a fresh random permutation of the whole training set;
  2. every option of the transform (81 crop offsets, 2 flips, (33 - s)^2 cutout corners)
     shuffled, at most `augment_max_options` kept;
  3. the permuted set split into that many contiguous, near-equal groups;
  4. one option applied per group, with one tensor operation.
Then a final permutation and batches of `batch_size` (the last, smaller one dropped with
`drop_last`). Test batches are the normalised test set in order.

Why it is fast: a handful of large tensor operations per epoch instead of a Python call per
sample, and no host-to-device copy per batch. Each group shares one random choice, which is
why the options are capped: with 200 groups of a 50,000-image set, ~250 images share a crop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from lab.recipe.config import Config
from lab.recipe.workload import CIFAR_MEAN, CIFAR_STD, CROP, PAD, batches_per_epoch
from lab.train.data import Cifar
from lab.train.pipeline import Batch
from lab.train.precision import Placement
from lab.train.rng import CountingRng

Option = tuple[int, ...]  # one choice of a transform: a crop offset, a flip, a cutout corner
Transform = tuple[str, list[Option], Callable[[torch.Tensor, Option], torch.Tensor]]


def _crop(group: torch.Tensor, option: Option) -> torch.Tensor:
    top, left = option
    return group[:, :, top : top + CROP, left : left + CROP]


def _flip(group: torch.Tensor, option: Option) -> torch.Tensor:
    return group.flip(3) if option[0] else group


def _cutout(size: int) -> Callable[[torch.Tensor, Option], torch.Tensor]:
    def apply(group: torch.Tensor, option: Option) -> torch.Tensor:
        top, left = option
        group = group.clone()
        group[:, :, top : top + size, left : left + size] = 0
        return group

    return apply


def transforms(config: Config) -> list[Transform]:
    """The per-epoch transforms in order, each with its list of options."""
    offsets = range(2 * PAD + 1)
    chosen: list[Transform] = [
        ("crop", [(top, left) for top in offsets for left in offsets], _crop),
        ("flip", [(0,), (1,)], _flip),
    ]
    if config.cutout:
        corners = range(CROP - config.cutout + 1)
        chosen.append(
            ("cutout", [(top, left) for top in corners for left in corners], _cutout(config.cutout))
        )
    return chosen


def even_splits(total: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous (start, end) ranges covering 0..total, sizes differing by at most 1."""
    bounds = [round(total * index / parts) for index in range(parts + 1)]
    return [(start, end) for start, end in zip(bounds, bounds[1:], strict=False) if end > start]


def normalise(images: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 NHWC -> the device -> `dtype` NCHW, normalised with the CIFAR-10 channel stats."""
    tensor = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).to(dtype)
    mean = torch.tensor(CIFAR_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(CIFAR_STD, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
    return ((tensor - mean) / std).contiguous()


class DevicePipeline:
    """The device-side pipeline (a `Pipeline`; no worker processes)."""

    generator_device: torch.device  # the permutations are drawn where the data is
    first_batch_queues_device_work = True  # the epoch's augmentation
    worker_launches = 0

    def __init__(self, config: Config, data: Cifar, placement: Placement) -> None:
        self.config = config
        device, dtype = placement.device, placement.input_dtype
        self.generator_device = device
        start = time.perf_counter()
        self.train = F.pad(normalise(data.train_images, device, dtype), (PAD,) * 4, mode="reflect")
        self.train_labels = torch.from_numpy(data.train_labels.astype(np.int64)).to(device)
        self.test = normalise(data.test_images, device, dtype)
        self.test_labels = torch.from_numpy(data.test_labels.astype(np.int64)).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the copies are asynchronous: time them, not launches
        self.preprocess_s = time.perf_counter() - start
        self.transforms = transforms(config)

    @property
    def train_size(self) -> int:
        return len(self.train_labels)

    @property
    def test_size(self) -> int:
        return len(self.test_labels)

    @property
    def steps_per_epoch(self) -> int:
        return batches_per_epoch(self.config, self.train_size)

    def augmented(self, rng: CountingRng) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's augmented, shuffled training set and its labels, drawn on `rng` (on
        the data's device: a permutation is not drawn on the host and copied)."""
        data, labels = self.train, self.train_labels
        for _, options, apply in self.transforms:
            order = rng.randperm(self.train_size)
            data, labels = data[order], labels[order]
            # One host read per transform: the options are host-side slices and flips.
            shuffled = rng.randperm(len(options))[: self.config.augment_max_options].tolist()
            kept = [options[i] for i in shuffled]
            groups = even_splits(self.train_size, len(kept))
            data = torch.cat(
                [
                    apply(data[start:end], option)
                    for (start, end), option in zip(groups, kept, strict=False)
                ]
            )
        order = rng.randperm(self.train_size)
        return data[order], labels[order]

    def _train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        # Augmenting happens when the first batch is asked for, so the trainer counts it as
        # waiting for data, as it would a DataLoader's worker start-up. The epoch's draws ride
        # with the first batch, as a loader's per-sample draws ride with theirs.
        rng = CountingRng(generator)
        data, labels = self.augmented(rng)
        calls = torch.tensor([rng.calls], dtype=torch.int64)
        for index in range(self.steps_per_epoch):
            start = index * self.config.batch_size
            end = start + self.config.batch_size
            yield data[start:end], labels[start:end], calls
            calls = torch.zeros(1, dtype=torch.int64)

    def epoch(self, generator: torch.Generator) -> tuple[Iterator[Batch], int]:
        """The epoch's batches; its RNG calls come with the first (none are made up front)."""
        return self._train_batches(generator), 0

    def test_batches(self) -> Iterator[Batch]:
        no_calls = torch.zeros(1, dtype=torch.int64)
        for start in range(0, self.test_size, self.config.test_batch_size):
            end = start + self.config.test_batch_size
            yield self.test[start:end], self.test_labels[start:end], no_calls
