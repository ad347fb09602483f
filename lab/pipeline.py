"""The data pipelines: the original per-sample PIL pipeline and the article's faster variants.

Which pipeline runs is decided by config fields alone (`preprocessing`, `augment_rng`,
`train_workers`, `test_workers`); no step is named here. Every sample reports how many RNG calls
its augmentation made, and every worker process reports its launch, so the trainer *measures*
the counters that explain each step rather than computing them from the config.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lab.config import Config

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
PAD = 4  # reflect padding before the random 32x32 crop
CROP = 32
BULK_RNG_CALLS_PER_EPOCH = 3  # crop x offsets, crop y offsets, flips

# The baseline deliberately starts 16 workers whatever the core count: that oversubscription is
# what the worker steps remove, so PyTorch's advice against it is noise here.
warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)


# ----------------------------------------------------------------------------- augmentation


class PerSampleChoices:
    """Each sample draws its own crop offsets and flip: 3 RNG calls per sample, as torchvision's
    RandomCrop (two `torch.randint`) and RandomHorizontalFlip (one `torch.rand`) did."""

    rng_calls_per_epoch = 0

    def new_epoch(self, size: int, generator: torch.Generator) -> None:
        """Nothing is drawn up front."""

    def __call__(self, index: int) -> tuple[int, int, bool, int]:
        top = int(torch.randint(0, 2 * PAD + 1, size=(1,)).item())
        left = int(torch.randint(0, 2 * PAD + 1, size=(1,)).item())
        flip = bool(torch.rand(1).item() < 0.5)
        return top, left, flip, 3


class BulkChoices:
    """All crop offsets and flips for the epoch drawn at its start in three vectorised calls;
    samples index into them (cifar10-fast's `set_random_choices`)."""

    rng_calls_per_epoch = BULK_RNG_CALLS_PER_EPOCH

    def __init__(self) -> None:
        self.tops = self.lefts = self.flips = np.zeros(0)

    def new_epoch(self, size: int, generator: torch.Generator) -> None:
        # Drawn in the main process before the pass starts its workers, which inherit them.
        self.tops = torch.randint(0, 2 * PAD + 1, (size,), generator=generator).numpy()
        self.lefts = torch.randint(0, 2 * PAD + 1, (size,), generator=generator).numpy()
        self.flips = (torch.rand(size, generator=generator) < 0.5).numpy()

    def __call__(self, index: int) -> tuple[int, int, bool, int]:
        return int(self.tops[index]), int(self.lefts[index]), bool(self.flips[index]), 0


def make_choices(config: Config) -> PerSampleChoices | BulkChoices:
    return BulkChoices() if config.augment_rng == "bulk" else PerSampleChoices()


# ----------------------------------------------------------------------------- datasets


def _normalise_chw(tensor: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor: HWC uint8 -> CHW float in [0, 1]."""
    array = np.asarray(image)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().float().div(255)


class PerSampleTrainSet(Dataset):
    """The original: every sample, every epoch, goes array -> PIL -> reflect-pad (numpy) -> PIL
    -> random crop -> random flip -> ToTensor -> Normalize (bkj/basenet's transform_train)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, choices: PerSampleChoices | BulkChoices
    ):
        self.images, self.labels, self.choices = images, labels, choices

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = Image.fromarray(self.images[index])  # what torchvision's CIFAR10 hands over
        padded = np.pad(np.asarray(image), [(PAD, PAD), (PAD, PAD), (0, 0)], mode="reflect")
        top, left, flip, rng_calls = self.choices(index)
        image = Image.fromarray(padded).crop((left, top, left + CROP, top + CROP))
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _normalise_chw(_to_tensor(image)), int(self.labels[index]), rng_calls


class PerSampleTestSet(Dataset):
    """The original test transform per sample: PIL -> ToTensor -> Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = Image.fromarray(self.images[index])
        return _normalise_chw(_to_tensor(image)), int(self.labels[index]), 0


def preprocess(images: np.ndarray, pad: int) -> np.ndarray:
    """Whole-set normalise, reflect-pad and transpose to NCHW float32, done once."""
    mean = np.asarray(CIFAR_MEAN, np.float32) * 255
    std = np.asarray(CIFAR_STD, np.float32) * 255
    normalised = (images.astype(np.float32) - mean) / std
    if pad:
        normalised = np.pad(normalised, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


class CachedTrainSet(Dataset):
    """Preprocessed once; per sample only the crop and flip remain (numpy slicing)."""

    def __init__(
        self, padded: np.ndarray, labels: np.ndarray, choices: PerSampleChoices | BulkChoices
    ):
        self.padded, self.labels, self.choices = padded, labels, choices

    def __len__(self) -> int:
        return len(self.padded)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        top, left, flip, rng_calls = self.choices(index)
        crop = self.padded[index, :, top : top + CROP, left : left + CROP]
        if flip:
            crop = crop[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(crop)), int(self.labels[index]), rng_calls


class CachedTestSet(Dataset):
    def __init__(self, prepared: np.ndarray, labels: np.ndarray):
        self.prepared, self.labels = prepared, labels

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return torch.from_numpy(self.prepared[index]), int(self.labels[index]), 0


# ----------------------------------------------------------------------------- loaders


class WorkerLaunchCounter:
    """Counts DataLoader worker processes as they start (called in each worker)."""

    def __init__(self) -> None:
        self._count = multiprocessing.get_context().Value("i", 0)

    def __call__(self, worker_id: int) -> None:
        with self._count.get_lock():
            self._count.value += 1

    @property
    def value(self) -> int:
        return int(self._count.value)


@dataclass
class Pipeline:
    """Train and test loaders for one run, the augmentation choices, and the one-off cost."""

    train_loader: DataLoader
    test_loader: DataLoader
    choices: PerSampleChoices | BulkChoices
    launches: WorkerLaunchCounter
    preprocess_s: float  # one-off preprocessing before training (0 when per-sample)


def build_pipeline(
    config: Config,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    seed: int,
    pin_memory: bool,
) -> Pipeline:
    choices = make_choices(config)
    start = time.perf_counter()
    if config.preprocessing == "cached":
        train_set: Dataset = CachedTrainSet(preprocess(train_images, PAD), train_labels, choices)
        test_set: Dataset = CachedTestSet(preprocess(test_images, 0), test_labels)
    else:
        train_set = PerSampleTrainSet(train_images, train_labels, choices)
        test_set = PerSampleTestSet(test_images, test_labels)
    preprocess_s = time.perf_counter() - start
    launches = WorkerLaunchCounter()
    shuffle_generator = torch.Generator().manual_seed(seed)
    # persistent_workers=False (the default, as in the original): every pass over a loader
    # starts its worker processes afresh.
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        generator=shuffle_generator,
        num_workers=config.train_workers,
        pin_memory=pin_memory,
        worker_init_fn=launches if config.train_workers else None,
    )
    test_loader = DataLoader(
        test_set,
        batch_size=config.test_batch_size,
        shuffle=False,
        num_workers=config.test_workers,
        pin_memory=pin_memory,
        worker_init_fn=launches if config.test_workers else None,
    )
    return Pipeline(train_loader, test_loader, choices, launches, preprocess_s)


def expected_worker_launches(config: Config) -> int:
    """Worker processes the config implies: every pass over each loader starts its workers."""
    return config.epochs * (config.train_workers + config.test_workers)


def expected_rng_calls(config: Config, train_size: int) -> int:
    """Augmentation RNG calls the config implies over a whole run."""
    if config.augment_rng == "bulk":
        return BULK_RNG_CALLS_PER_EPOCH * config.epochs
    return 3 * train_size * config.epochs
