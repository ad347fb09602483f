"""The data pipelines: the original per-sample PIL pipeline and the article's faster variants.

Which pipeline runs is decided by config fields alone (`data_path`, `preprocessing`,
`augment_rng`, `cutout`, `train_workers`, `test_workers`, `drop_last`); no step is named here.
This module holds the `Pipeline` protocol and the DataLoader pipelines; `lab.train.device_data`
the whole-set-on-device one. Both are built from the dataset (`Cifar`) and a `Placement`, and give
the trainer the same thing (`Pipeline`): per epoch, an iterator of `(images, labels, rng_calls)`
batches and its length; per evaluation, the test batches. Every sample reports how many RNG calls
its augmentation made, and every worker process reports its launch, so the trainer *measures*
the counters that explain each step rather than computing them from the config. A profiled
pass has the workers also record their own timeline (`lab.train.worker_trace`); the datasets
build each sample in two stages (`fetch`, `transform`) so that it can time them apart.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lab.recipe.config import Config
from lab.recipe.workload import CIFAR_MEAN, CIFAR_STD, CROP, PAD
from lab.train.data import Cifar
from lab.train.precision import Placement
from lab.train.rng import CountingRng
from lab.train.worker_trace import StagedDataset, traced_loader_parts

# The baseline deliberately starts 16 workers whatever the core count: that oversubscription is
# what the worker steps remove, so PyTorch's advice against it is noise here.
warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)


# ----------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Choice:
    """One sample's augmentation: crop offsets, flip, the cutout square's corner (None: no
    cutout), and how many RNG calls drawing it took."""

    top: int
    left: int
    flip: bool
    cutout_at: tuple[int, int] | None
    rng_calls: int


class PerSampleChoices:
    """Each sample draws its own crop offsets and flip: 3 RNG calls per sample, as torchvision's
    RandomCrop (two `torch.randint`) and RandomHorizontalFlip (one `torch.rand`) did; 2 more for
    the cutout square when there is one, as cifar10-fast's per-sample `Cutout`."""

    rng_calls_per_epoch = 0  # nothing is drawn up front

    def __init__(self, cutout: int) -> None:
        self.cutout = cutout
        self.rng = CountingRng()  # the process's generator: each worker's own, as torchvision

    def new_epoch(self, size: int, generator: torch.Generator) -> None:
        """Nothing is drawn up front."""

    def __call__(self, index: int) -> Choice:
        before = self.rng.calls
        top = int(self.rng.randint(2 * PAD + 1, (1,)).item())
        left = int(self.rng.randint(2 * PAD + 1, (1,)).item())
        flip = bool(self.rng.rand((1,)).item() < 0.5)
        at = None
        if self.cutout:
            corners = CROP - self.cutout + 1
            at = (
                int(self.rng.randint(corners, (1,)).item()),
                int(self.rng.randint(corners, (1,)).item()),
            )
        return Choice(top, left, flip, at, self.rng.calls - before)


class BulkChoices:
    """All crop offsets and flips (and cutout corners) for the epoch drawn at its start in a
    few vectorised calls; samples index into them (cifar10-fast's `set_random_choices`)."""

    def __init__(self, cutout: int) -> None:
        self.cutout = cutout
        self.rng_calls_per_epoch = 0  # the calls the last `new_epoch` made
        self.tops = self.lefts = self.flips = np.zeros(0)
        self.cutout_tops = self.cutout_lefts = np.zeros(0)

    def new_epoch(self, size: int, generator: torch.Generator) -> None:
        # Drawn in the main process before the pass starts its workers, which inherit them.
        rng = CountingRng(generator)
        self.tops = rng.randint(2 * PAD + 1, (size,)).numpy()
        self.lefts = rng.randint(2 * PAD + 1, (size,)).numpy()
        self.flips = (rng.rand((size,)) < 0.5).numpy()
        if self.cutout:
            corners = CROP - self.cutout + 1
            self.cutout_tops = rng.randint(corners, (size,)).numpy()
            self.cutout_lefts = rng.randint(corners, (size,)).numpy()
        self.rng_calls_per_epoch = rng.calls

    def __call__(self, index: int) -> Choice:
        at = (int(self.cutout_tops[index]), int(self.cutout_lefts[index])) if self.cutout else None
        return Choice(int(self.tops[index]), int(self.lefts[index]), bool(self.flips[index]), at, 0)


def make_choices(config: Config) -> PerSampleChoices | BulkChoices:
    if config.augment_rng == "bulk":
        return BulkChoices(config.cutout)
    return PerSampleChoices(config.cutout)


def apply_cutout(chw: np.ndarray | torch.Tensor, at: tuple[int, int] | None, size: int) -> None:
    """Set a size x size square at `at` to 0 (the mean, after normalisation), in place."""
    if at is not None:
        top, left = at
        chw[:, top : top + size, left : left + size] = 0


# ----------------------------------------------------------------------------- datasets


def _normalise_chw(tensor: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor: HWC uint8 -> CHW float in [0, 1]."""
    array = np.asarray(image)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().float().div(255)


class PerSampleTrainSet(StagedDataset):
    """The original: every sample, every epoch, goes array -> PIL -> reflect-pad (numpy) -> PIL
    -> random crop -> random flip -> ToTensor -> Normalize (bkj/basenet's transform_train)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, choices: PerSampleChoices | BulkChoices
    ):
        self.images, self.labels, self.choices = images, labels, choices

    def __len__(self) -> int:
        return len(self.images)

    def fetch(self, index: int) -> tuple[int, Image.Image, int]:
        # What torchvision's CIFAR10 hands over: a PIL image and its label.
        return index, Image.fromarray(self.images[index]), int(self.labels[index])

    def transform(self, fetched: tuple[int, Image.Image, int]) -> tuple[torch.Tensor, int, int]:
        index, image, label = fetched
        padded = np.pad(np.asarray(image), [(PAD, PAD), (PAD, PAD), (0, 0)], mode="reflect")
        choice = self.choices(index)
        left, top = choice.left, choice.top
        image = Image.fromarray(padded).crop((left, top, left + CROP, top + CROP))
        if choice.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tensor = _normalise_chw(_to_tensor(image))
        apply_cutout(tensor, choice.cutout_at, self.choices.cutout)
        return tensor, label, choice.rng_calls


class PerSampleTestSet(StagedDataset):
    """The original test transform per sample: PIL -> ToTensor -> Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def fetch(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])

    def transform(self, fetched: tuple[Image.Image, int]) -> tuple[torch.Tensor, int, int]:
        image, label = fetched
        return _normalise_chw(_to_tensor(image)), label, 0


def preprocess_both(
    train_images: np.ndarray, test_images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The cached pipeline's one-off work: the training set padded for its crops, the test set
    not (the profiled passes re-run exactly this)."""
    return preprocess(train_images, PAD), preprocess(test_images, 0)


def preprocess(images: np.ndarray, pad: int) -> np.ndarray:
    """Whole-set normalise, reflect-pad and transpose to NCHW float32, done once."""
    mean = np.asarray(CIFAR_MEAN, np.float32) * 255
    std = np.asarray(CIFAR_STD, np.float32) * 255
    normalised = (images.astype(np.float32) - mean) / std
    if pad:
        normalised = np.pad(normalised, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


class CachedTrainSet(StagedDataset):
    """Preprocessed once; per sample only the crop and flip remain (numpy slicing)."""

    def __init__(
        self, padded: np.ndarray, labels: np.ndarray, choices: PerSampleChoices | BulkChoices
    ):
        self.padded, self.labels, self.choices = padded, labels, choices

    def __len__(self) -> int:
        return len(self.padded)

    def fetch(self, index: int) -> tuple[int, np.ndarray, int]:
        return index, self.padded[index], int(self.labels[index])  # a view of the cached set

    def transform(self, fetched: tuple[int, np.ndarray, int]) -> tuple[torch.Tensor, int, int]:
        index, padded, label = fetched
        choice = self.choices(index)
        top, left = choice.top, choice.left
        crop = padded[:, top : top + CROP, left : left + CROP]
        if choice.flip:
            crop = crop[:, :, ::-1]
        crop = np.array(crop)  # a copy: cutout must not write into the cached set
        apply_cutout(crop, choice.cutout_at, self.choices.cutout)
        return torch.from_numpy(crop), label, choice.rng_calls


class CachedTestSet(StagedDataset):
    def __init__(self, prepared: np.ndarray, labels: np.ndarray):
        self.prepared, self.labels = prepared, labels

    def __len__(self) -> int:
        return len(self.prepared)

    def fetch(self, index: int) -> tuple[np.ndarray, int]:
        return self.prepared[index], int(self.labels[index])

    def transform(self, fetched: tuple[np.ndarray, int]) -> tuple[torch.Tensor, int, int]:
        prepared, label = fetched
        return torch.from_numpy(prepared), label, 0


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


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, RNG calls per sample


class Pipeline(Protocol):
    """What the trainer asks of a data path (`LoaderPipeline`, `device_data.DevicePipeline`)."""

    @property
    def preprocess_s(self) -> float:
        """Seconds of one-off preprocessing when the pipeline was built (0 when none)."""

    @property
    def train_size(self) -> int:
        """Images in the training set."""

    @property
    def test_size(self) -> int:
        """Images in the test set."""

    @property
    def steps_per_epoch(self) -> int:
        """Training batches in one full pass."""

    @property
    def generator_device(self) -> torch.device:
        """Where the epoch's up-front random draws are made (the generator `epoch` takes)."""

    @property
    def first_batch_queues_device_work(self) -> bool:
        """Asking for an epoch's first batch queues device work (a device-side augmentation),
        so the wait for it is read on a synchronising clock."""

    @property
    def worker_launches(self) -> int:
        """Worker processes started so far, counted in the workers."""

    def epoch(self, generator: torch.Generator) -> tuple[Iterable[Batch], int]:
        """One pass's batches and the RNG calls made up front (the rest ride with batches)."""

    def test_batches(self) -> Iterable[Batch]:
        """The test set's batches, in order."""


@dataclass
class LoaderPipeline:
    """Train and test loaders for one run, the augmentation choices, and the one-off cost."""

    train_loader: DataLoader
    test_loader: DataLoader
    choices: PerSampleChoices | BulkChoices
    launches: WorkerLaunchCounter
    preprocess_s: float  # one-off preprocessing before training (0 when per-sample)

    @property
    def train_size(self) -> int:
        return len(self.train_loader.dataset)  # type: ignore[arg-type]

    @property
    def test_size(self) -> int:
        return len(self.test_loader.dataset)  # type: ignore[arg-type]

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def generator_device(self) -> torch.device:
        return torch.device("cpu")  # bulk choices are drawn on the host, read by workers

    @property
    def first_batch_queues_device_work(self) -> bool:
        return False  # starting workers is host work

    @property
    def worker_launches(self) -> int:
        return self.launches.value

    def epoch(self, generator: torch.Generator) -> tuple[Iterable[Batch], int]:
        """The epoch's batches (workers start when iteration begins) and the RNG calls made
        up front, counted (bulk choices; per-sample calls ride with each batch)."""
        self.choices.new_epoch(self.train_size, generator)
        return self.train_loader, self.choices.rng_calls_per_epoch

    def test_batches(self) -> Iterable[Batch]:
        return self.test_loader


def build_loader_pipeline(
    config: Config, data: Cifar, placement: Placement, seed: int
) -> LoaderPipeline:
    """The DataLoader pipeline over `data` (already subset); `seed` seeds its shuffle."""
    choices = make_choices(config)
    start = time.perf_counter()
    if config.preprocessing == "cached":
        train_padded, test_normalised = preprocess_both(data.train_images, data.test_images)
        train_set: StagedDataset = CachedTrainSet(train_padded, data.train_labels, choices)
        test_set: StagedDataset = CachedTestSet(test_normalised, data.test_labels)
    else:
        train_set = PerSampleTrainSet(data.train_images, data.train_labels, choices)
        test_set = PerSampleTestSet(data.test_images, data.test_labels)
    preprocess_s = time.perf_counter() - start
    launches = WorkerLaunchCounter()
    shuffle_generator = torch.Generator().manual_seed(seed)
    # persistent_workers=False (the default, as in the original): every pass over a loader
    # starts its worker processes afresh.
    # A profiled pass asks for the workers' own timeline (`lab.train.worker_trace`); for every
    # other run these are the dataset and worker_init_fn alone.
    train_parts = traced_loader_parts(
        train_set, config.train_workers, launches if config.train_workers else None, "train"
    )
    test_parts = traced_loader_parts(
        test_set, config.test_workers, launches if config.test_workers else None, "test"
    )
    train_loader = DataLoader(
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=config.drop_last,
        generator=shuffle_generator,
        num_workers=config.train_workers,
        pin_memory=placement.pin_memory,
        **train_parts,
    )
    test_loader = DataLoader(
        batch_size=config.test_batch_size,
        shuffle=False,
        num_workers=config.test_workers,
        pin_memory=placement.pin_memory,
        **test_parts,
    )
    return LoaderPipeline(train_loader, test_loader, choices, launches, preprocess_s)
