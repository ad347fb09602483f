"""One training run: the recipe of SPEC.md, timed the way DAWNBench timed it.

The timed region of an epoch is its training pass plus the test-set evaluation after it;
one-off work (decoding, whole-set preprocessing, building the network) happens before it and is
recorded apart. On CUDA every timer reading is preceded by a synchronise, since kernels run
asynchronously and an unsynchronised clock would time only their launch.
"""

from __future__ import annotations

import gc
import random
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from lab.config import Config
from lab.data import Cifar
from lab.errors import LabError
from lab.network import build_resnet18
from lab.pipeline import Pipeline, build_pipeline


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_s: float  # wall seconds of the training pass (workers' start-up included)
    eval_s: float  # wall seconds of the test-set evaluation after it
    train_data_wait_s: float  # seconds the training loop waited for its next batch
    eval_data_wait_s: float  # seconds the evaluation loop waited for its next batch
    train_loss: float  # mean cross-entropy over the epoch's training samples
    test_accuracy: float  # fraction of the test subset classified correctly
    images_per_s: float  # training images / train_s


@dataclass
class RunResult:
    """Everything measured in one run (the `measurements` part of a record)."""

    device: str
    precision: str
    train_size: int
    test_size: int
    epochs: list[EpochStats] = field(default_factory=list)
    preprocess_s: float = 0.0  # one-off whole-set preprocessing, outside the timed region
    setup_s: float = 0.0  # building the network and optimiser, outside the timed region
    worker_launches: int = 0  # DataLoader worker processes started, counted in the workers
    rng_calls: int = 0  # augmentation RNG calls, counted where they were made
    cpu_main_s: float = 0.0  # user+system CPU seconds of this process in the timed region
    cpu_children_s: float = 0.0  # user+system CPU seconds of worker processes (reaped)

    @property
    def train_s(self) -> float:
        return sum(epoch.train_s for epoch in self.epochs)

    @property
    def eval_s(self) -> float:
        return sum(epoch.eval_s for epoch in self.epochs)

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s

    @property
    def final_accuracy(self) -> float:
        return self.epochs[-1].test_accuracy if self.epochs else 0.0

    def to_dict(self, target_accuracy: float) -> dict:
        data = asdict(self)
        reached = [e for e in self.epochs if e.test_accuracy >= target_accuracy]
        first = reached[0].epoch if reached else None
        data.update(
            total_s=self.total_s,
            train_s=self.train_s,
            eval_s=self.eval_s,
            data_wait_s=sum(e.train_data_wait_s + e.eval_data_wait_s for e in self.epochs),
            train_data_wait_s=sum(e.train_data_wait_s for e in self.epochs),
            eval_data_wait_s=sum(e.eval_data_wait_s for e in self.epochs),
            images_per_s=self.train_size * len(self.epochs) / self.train_s if self.epochs else 0,
            final_test_accuracy=self.final_accuracy,
            reached_target=self.final_accuracy >= target_accuracy,
            first_epoch_at_target=first,
            time_to_target_s=(
                sum(e.train_s + e.eval_s for e in self.epochs[:first]) if first else None
            ),
        )
        return data


def resolve_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_precision(config: Config, device: torch.device) -> str:
    """'auto' is the original's fp16 on CUDA and fp32 on CPU (bf16/fp16 are slower on CPU)."""
    if config.precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return config.precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Timer:
    """Wall-clock seconds that synchronise the device before every reading."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def _cpu_seconds() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    # Children count once reaped; workers are joined at the end of every pass.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


Phase = Callable[[str], AbstractContextManager]


def no_phase(name: str) -> AbstractContextManager:
    """Timed runs label nothing; a profiled pass passes `record_function` labels instead."""
    return nullcontext()


def _timed_batches(
    loader: torch.utils.data.DataLoader, phase: Phase
) -> Iterator[tuple[object, float]]:
    """Yield (batch, seconds waited for it); creating the iterator (starting workers) counts
    as waiting for the first batch."""
    iterator = None
    while True:
        start = time.perf_counter()
        with phase("data_wait"):
            if iterator is None:
                iterator = iter(loader)
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - start


class Trainer:
    """Builds the network and optimiser for a config and runs epochs; knows no step names."""

    def __init__(self, config: Config, data: Cifar, device: torch.device, seed: int) -> None:
        self.config, self.device, self.seed = config, device, seed
        self.precision = resolve_precision(config, device)
        if self.precision in ("fp16", "autocast") and device.type != "cuda":
            raise LabError(f"--set precision={self.precision}: needs CUDA; use fp32 on CPU")
        seed_everything(seed)
        setup_start = time.perf_counter()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = config.cudnn_benchmark
        self.model = build_resnet18(config.width, config.prep_bn).to(device)
        if self.precision == "fp16":
            self.model = self.model.half()  # the original: everything fp16, BN included
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=0.0,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "autocast" else None
        self.schedule = config.schedule
        self.pipeline: Pipeline = build_pipeline(
            config,
            data.train_images,
            data.train_labels,
            data.test_images,
            data.test_labels,
            seed=seed,
            pin_memory=config.pin_memory and device.type == "cuda",
        )
        self.setup_s = time.perf_counter() - setup_start - self.pipeline.preprocess_s
        self.bulk_generator = torch.Generator().manual_seed(seed + 1)
        self.timer = Timer(device)
        self.rng_calls = 0

    def _inputs(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.precision == "fp16":
            images = images.half()
        return images, labels

    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.precision == "autocast":
            with torch.autocast("cuda", dtype=torch.float16):
                return F.cross_entropy(self.model(images), labels)
        return F.cross_entropy(self.model(images), labels)

    def train_epoch(
        self,
        epoch_index: int,
        phase: Phase = no_phase,
        after_step: Callable[[], None] | None = None,
        max_steps: int | None = None,
    ) -> tuple[float, float, float]:
        """One pass (or its first `max_steps` steps); returns (wall seconds, seconds waiting
        for data, mean loss). `phase` labels the parts of a step; `after_step` runs after each."""
        self.model.train()
        loader = self.pipeline.train_loader
        self.pipeline.choices.new_epoch(len(loader.dataset), self.bulk_generator)
        self.rng_calls += self.pipeline.choices.rng_calls_per_epoch
        steps = len(loader)
        # Summed on the device so the loop never forces a sync just to log the loss.
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float32)
        waited, seen = 0.0, 0
        start = self.timer.now()
        for step, ((images, labels, rng_calls), wait) in enumerate(_timed_batches(loader, phase)):
            waited += wait
            self.rng_calls += int(rng_calls.sum())
            for group in self.optimizer.param_groups:
                group["lr"] = self.schedule(epoch_index + step / steps)
            with phase("h2d"):
                images, labels = self._inputs(images, labels)
            with phase("forward"):
                loss = self._loss(images, labels)
            with phase("backward"):
                self.optimizer.zero_grad(set_to_none=True)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            with phase("optimizer"):
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
            loss_sum += loss.detach().float() * len(labels)
            seen += len(labels)
            if after_step is not None:
                after_step()
            if max_steps is not None and step + 1 >= max_steps:
                break
        elapsed = self.timer.now() - start
        return elapsed, waited, float(loss_sum) / max(seen, 1)

    @torch.no_grad()
    def evaluate(self, phase: Phase = no_phase) -> tuple[float, float, float]:
        """Test-set pass; returns (wall seconds, seconds waiting for data, accuracy)."""
        self.model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        waited = 0.0
        start = self.timer.now()
        for (images, labels, _), wait in _timed_batches(self.pipeline.test_loader, phase):
            waited += wait
            with phase("h2d"):
                images, labels = self._inputs(images, labels)
            with phase("forward"):
                if self.precision == "autocast":
                    with torch.autocast("cuda", dtype=torch.float16):
                        logits = self.model(images)
                else:
                    logits = self.model(images)
            correct += (logits.argmax(dim=1) == labels).sum()
        elapsed = self.timer.now() - start
        return elapsed, waited, int(correct) / len(self.pipeline.test_loader.dataset)


EpochCallback = Callable[[EpochStats, int], None]


def run_training(
    config: Config,
    data: Cifar,
    device: torch.device,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Train `config` on `data` (already subset) and measure everything the record needs."""
    trainer = Trainer(config, data, device, seed)
    result = RunResult(
        device=str(device),
        precision=trainer.precision,
        train_size=len(data.train_labels),
        test_size=len(data.test_labels),
        preprocess_s=trainer.pipeline.preprocess_s,
        setup_s=trainer.setup_s,
    )
    # Garbage left by the previous run (another variant's network, loaders, arrays) would
    # otherwise be collected inside this run's timed region, charging one variant for another.
    gc.collect()
    cpu_main_start, cpu_children_start = _cpu_seconds()
    for epoch_index in range(config.epochs):
        train_s, train_wait, loss = trainer.train_epoch(epoch_index)
        eval_s, eval_wait, accuracy = trainer.evaluate()
        stats = EpochStats(
            epoch=epoch_index + 1,
            train_s=train_s,
            eval_s=eval_s,
            train_data_wait_s=train_wait,
            eval_data_wait_s=eval_wait,
            train_loss=loss,
            test_accuracy=accuracy,
            images_per_s=len(data.train_labels) / train_s,
        )
        result.epochs.append(stats)
        if on_epoch is not None:
            on_epoch(stats, config.epochs)
    cpu_main_end, cpu_children_end = _cpu_seconds()
    result.cpu_main_s = cpu_main_end - cpu_main_start
    result.cpu_children_s = cpu_children_end - cpu_children_start
    result.worker_launches = trainer.pipeline.launches.value
    result.rng_calls = trainer.rng_calls
    return result
