"""One training run: the article's recipe (docs/article.md), timed the way DAWNBench timed it.

The timed region of an epoch is its training pass plus the test-set evaluation after it;
one-off work (decoding, whole-set preprocessing, the whitening's eigendecomposition, building
the network) happens before it and is recorded apart, so a report can also add the pieces up
on the rule of Part 8 (training + preprocessing, evaluation excluded). On CUDA the readings
that bound a timed region (an epoch's training pass, its evaluation, the whitening) are
preceded by a synchronise, since kernels run asynchronously and an unsynchronised clock would
time only their launch; the wait for each batch is read without one.

Every option of the series is a config field read here or in the builders: parameter groups
(`bias_lr_scale`, `bias_wd_scale`), label smoothing, weight EMA, flip TTA, fractional epochs
here; the network in `network.py`; dtypes, autocast, memory format and the inputs' form in the
`Placement` (`precision.py`); the data path (`data_path`) in a `Pipeline` (`pipeline.py`,
`device_data.py`). No step is named.
"""

from __future__ import annotations

import copy
import gc
import random
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch.nn import functional as F

from lab.recipe.config import Config
from lab.recipe.horizons import run_bn_momentum, run_ema_rho
from lab.recipe.vocabulary import OTHER, PHASES
from lab.recipe.workload import steps_per_pass
from lab.train.airbench_data import AirbenchPipeline
from lab.train.clock import NoLedger, PhaseLedger, clock_for
from lab.train.data import Cifar
from lab.train.device_data import DevicePipeline, normalise
from lab.train.network import (
    PATCH_WHITENING_SIZE,
    WHITENING_PATCH,
    build_network,
    whitening_bias,
)
from lab.train.pipeline import Batch, Pipeline, build_loader_pipeline
from lab.train.precision import Placement
from lab.train.update import Muon, PageNesterov


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_s: float  # wall seconds of the training pass (workers' start-up included)
    eval_s: float  # wall seconds of the test-set evaluation after it
    train_data_wait_s: float  # seconds the training loop waited for its next batch
    eval_data_wait_s: float  # seconds the evaluation loop waited for its next batch
    train_loss: float  # mean training loss over the epoch's samples (smoothed when set)
    test_accuracy: float  # fraction of the test subset classified correctly
    images_per_s: float  # training images / train_s
    train_steps: int = 0  # optimiser steps in the pass
    trained_images: int = 0  # images trained on in the pass (a cut or dropped batch is not)
    # seconds per phase of the epoch's timed region (vocabulary.PHASES), summing to
    # train_s + eval_s; `other` is the remainder
    phases_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PassResult:
    """One training pass (or its first `max_steps` steps)."""

    seconds: float  # wall seconds of the pass (workers' start-up included)
    data_wait_s: float  # seconds the loop waited for its next batch
    mean_loss: float  # mean training loss over the pass's samples
    steps: int  # optimiser steps taken
    images: int  # images trained on
    phases_s: dict[str, float]  # seconds per phase (PhaseLedger), inside `seconds`


@dataclass(frozen=True)
class EvalResult:
    """One test-set evaluation."""

    seconds: float  # wall seconds of the evaluation
    data_wait_s: float  # seconds the loop waited for its next batch
    accuracy: float  # fraction of the test subset classified correctly
    phases_s: dict[str, float]  # seconds per phase (PhaseLedger), inside `seconds`


@dataclass
class RunResult:
    """Everything measured in one run (the `measurements` part of a record)."""

    device: str
    precision: str
    train_size: int
    test_size: int
    epochs: list[EpochStats] = field(default_factory=list)
    preprocess_s: float = 0.0  # one-off whole-set preprocessing (whitening included),
    # outside the timed region
    whitening_s: float = 0.0  # of which: the whitening filters' patches and eigendecomposition
    setup_s: float = 0.0  # building the network and optimiser, outside the timed region
    warmup_s: float = 0.0  # one forward/backward per batch shape on a copy of the model
    # (cuDNN's autotuning), outside the timed region
    worker_launches: int = 0  # DataLoader worker processes started, counted in the workers
    rng_calls: int = 0  # augmentation RNG calls, counted where they were made
    cpu_main_s: float = 0.0  # user+system CPU seconds of this process in the timed region
    cpu_children_s: float = 0.0  # user+system CPU seconds of worker processes (reaped)
    ema_rho: float = 0.0  # the weight EMA's rho per update this run used: the config's, or
    # its memory scaled to the run's length (`horizons`); 0: no EMA
    bn_momentum: float = 0.1  # BatchNorm's running-statistics momentum this run used: the
    # config's, or its memory scaled to the run's steps (`horizons`)
    weight_average_updates: int = 0  # updates of a weight average (EMA or Lookahead), counted
    # where they are made; Lookahead's per-epoch copy-back moves no average and is not one
    eval_views: int = 0  # forward passes per test image in an evaluation (TTA's views)
    compile_s: float = 0.0  # torch.compile's compilation in the warm-up, outside the timed
    # region (0: not compiled)

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
    def train_steps(self) -> int:
        return sum(epoch.train_steps for epoch in self.epochs)

    @property
    def phases_s(self) -> dict[str, float]:
        """Seconds per phase of the whole timed region, in vocabulary.PHASES' order, summing
        to `total_s`: `other` is recomputed as the remainder over the run (not the sum of
        the epochs' remainders), so the sum holds to rounding."""
        totals = dict.fromkeys(PHASES, 0.0)
        for epoch in self.epochs:
            for phase, seconds in epoch.phases_s.items():
                totals[phase] += seconds
        named = sum(seconds for phase, seconds in totals.items() if phase != OTHER)
        totals[OTHER] = self.total_s - named
        return totals

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
            train_steps=self.train_steps,
            images_per_s=(
                sum(e.trained_images for e in self.epochs) / self.train_s if self.epochs else 0
            ),
            phases_s=self.phases_s,
            final_test_accuracy=self.final_accuracy,
            reached_target=self.final_accuracy >= target_accuracy,
            first_epoch_at_target=first,
            time_to_target_s=(
                sum(e.train_s + e.eval_s for e in self.epochs[:first]) if first else None
            ),
        )
        return data


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
    batches: Iterable[Batch],
    phase: Phase,
    ledger: PhaseLedger,
    names: tuple[str, str],
    first_clock: Callable[[], float] = time.perf_counter,
) -> Iterator[tuple[Batch, float]]:
    """Yield (batch, seconds waited for it); creating the iterator (starting workers, or
    augmenting a device-side epoch) counts as waiting for the first batch, read on
    `first_clock`: a synchronising clock where that wait queues device work (the device
    pipeline's augmentation), which the CPU clock would time as launches only. Later batches
    are host work (a loader) or views (the device pipeline): the CPU clock, which leaves the
    device's queue running.

    The `ledger` is in the pass's start-up phase when this starts; every later wait is entered
    as `names[0]` and the wait that finds the iterator exhausted (a loader's workers shutting
    down) is relabelled `names[1]`, the pass's edge."""
    waiting, edge = names
    iterator = None
    while True:
        clock = first_clock if iterator is None else time.perf_counter
        if iterator is not None:
            ledger.enter(waiting)
        start = clock()
        with phase("data_wait"):
            if iterator is None:
                iterator = iter(batches)
            batch = next(iterator, None)
        if batch is None:
            ledger.relabel(edge)
            return
        yield batch, clock() - start


def _patch_pca(images: torch.Tensor, size: int, eps: float, unbiased: bool) -> torch.Tensor:
    """PCA filters of every size x size patch of normalised NCHW images (stride 1, no padding;
    (c, h, w) order): the uncentred covariance X^T X / (n - 1) (`unbiased`) or / n, its
    eigenvectors by descending eigenvalue, each scaled by 1 / sqrt(eigenvalue + eps)."""
    dimensions = 3 * size * size
    patches = F.unfold(images.float(), size).transpose(1, 2).reshape(-1, dimensions)
    covariance = patches.T @ patches / (len(patches) - 1 if unbiased else len(patches))
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    filters = (vectors / torch.sqrt(values + eps)).T
    return filters.reshape(dimensions, 3, size, size)


def whitening_filters(images: torch.Tensor, eps: float) -> torch.Tensor:
    """The whitening conv's 27 filters from normalised NCHW 32x32 images: the PCA of every 3x3
    patch, covariance over n - 1 (`_patch_pca`)."""
    return _patch_pca(images, WHITENING_PATCH, eps, unbiased=True)


def patch_whitening_filters(images: torch.Tensor, eps: float) -> torch.Tensor:
    """airbench's 24 stem filters from normalised NCHW images: the PCA of every 2x2 patch,
    covariance over n (the source's), then the 12 filters' negations (so the GELU after the
    stem keeps both signs of each component)."""
    filters = _patch_pca(images, PATCH_WHITENING_SIZE, eps, unbiased=False)
    return torch.cat([filters, -filters])


def tta_views(images: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
    """airbench's multi-crop TTA (`tta_level=2`): (weight, view) for the image and its mirror
    (1/4 each), and the two one-pixel diagonal shifts of the reflect-padded image, up-left and
    down-right, each with its mirror (1/8 each). The weights sum to 1."""
    size = images.shape[-1]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, :size, :size], padded[:, :, 2 : size + 2, 2 : size + 2]]
    views = [(0.25, images), (0.25, images.flip(3))]
    return views + [(0.125, view) for shift in shifted for view in (shift, shift.flip(3))]


def whitening_sample(train_size: int, config: Config) -> np.ndarray:
    """Indices (sorted) of the `whitening_images` training images whose patches give the
    whitening filters: a random sample drawn with `whitening_seed`, since the training set may
    be ordered by class (an image folder is), and its first images would be one or two classes
    only. Page took the first 10,000 of a mixed order."""
    count = min(config.whitening_images, train_size)
    rng = np.random.default_rng(config.whitening_seed)
    return np.sort(rng.choice(train_size, size=count, replace=False))


def _bias_group(model: torch.nn.Module, config: Config) -> set[int]:
    """The ids of the parameters that take the bias group's rate and decay (`bias_params`):
    every parameter named "bias" (Page's split), or BatchNorm's shifts only (airbench's split
    on "norm": its whitening conv's bias stays with the weights)."""
    if config.bias_params == "batchnorm":
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        return {id(m.bias) for m in norms if m.bias is not None}
    return {id(p) for name, p in model.named_parameters() if "bias" in name}


def muon_filters(model: torch.nn.Module, config: Config) -> list[torch.nn.Parameter]:
    """The parameters Muon updates (`optimizer="muon"`): every trainable 4-d filter bank, as
    airbench94_muon's `len(p.shape) == 4`; none with SGD."""
    if config.optimizer != "muon":
        return []
    return [p for p in model.parameters() if p.requires_grad and p.dim() == 4]


def _optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    """SGD over the trainable parameters Muon does not take (`muon_filters`), in up to three
    groups: the weights; the bias group (`_bias_group`; in the ResNet-9 the BatchNorm shifts),
    which takes `bias_lr_scale` x the scheduled rate and `bias_wd_scale` x the weight decay;
    and with `whitening_bias_decay` the stem's bias on its own, at the bias group's rate and
    decay but its own schedule (`Trainer._set_lr`). Each group's `lr_scale` is applied at
    every step.

    The loss is summed over the batch (Page's form; see `Trainer._loss`), so the configured
    weight decay is multiplied by the batch size here and the rate divided by it in `_set_lr`:
    the same update as a mean loss at the configured rate and decay."""
    muon = {id(p) for p in muon_filters(model, config)}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in muon]
    biases = _bias_group(model, config)
    stem = whitening_bias(model, config) if config.whitening_bias_decay else None
    alone = {id(stem)} if stem is not None else set()
    decay = config.weight_decay * config.batch_size
    groups = [
        {
            "params": [p for _, p in named if id(p) not in biases | alone],
            "weight_decay": decay,
            "lr_scale": 1.0,
        },
        {
            "params": [p for _, p in named if id(p) in biases - alone],
            "weight_decay": decay * config.bias_wd_scale,
            "lr_scale": config.bias_lr_scale,
        },
        {
            "params": [p for _, p in named if id(p) in alone],
            "weight_decay": decay * config.bias_wd_scale,
            "lr_scale": config.bias_lr_scale,
            "until_epoch": config.whitening_bias_epochs,
        },
    ]
    kept = [group for group in groups if group["params"]]
    if config.sgd_update == "page":
        return PageNesterov(kept, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.SGD(kept, lr=0.0, momentum=config.momentum, nesterov=config.nesterov)


def _muon(model: torch.nn.Module, config: Config) -> Muon | None:
    filters = muon_filters(model, config)
    return Muon(filters, config.muon_momentum, config.muon_ns_steps) if filters else None


class Lookahead:
    """airbench's Lookahead (`main5_lookahead`): an average of every floating-point state entry
    (weights, frozen ones included, and BatchNorm's running statistics), moved toward the
    model by `update(rho)`, avg <- avg + (1 - rho)(live - avg), after which the model is set
    to it. The first update only takes the copy (as the source's first due step does)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.live = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.average: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, rho: float) -> bool:
        """Move the average and copy it back; False when this call only took the copy."""
        if self.average is None:
            self.average = [t.clone() for t in self.live]
            return False
        for average, live in zip(self.average, self.live, strict=True):
            average.lerp_(live, 1 - rho)
            live.copy_(average)
        return True

    @torch.no_grad()
    def copy_back(self) -> None:
        """The weights set to the average (the source's per-epoch `update(decay=1.0)`)."""
        if self.average is None:  # no update due yet: nothing to copy
            return
        for average, live in zip(self.average, self.live, strict=True):
            live.copy_(average)


class WeightAverage:
    """Exponential moving average of every floating-point state entry (weights, frozen ones
    included, and BatchNorm running statistics) into a copy of the freshly built model; the
    integer batch counters are left alone. No bias correction, as the source."""

    def __init__(self, model: torch.nn.Module, rho: float) -> None:
        self.model = copy.deepcopy(model)
        self.rho = rho
        pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        self.pairs = [(ema, live) for ema, live in pairs if ema.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        # state_dict() tensors are the modules' own (ghost BN averages its statistics in
        # place), so the pairs taken at construction stay live.
        for ema, live in self.pairs:
            ema.mul_(self.rho).add_(live, alpha=1 - self.rho)


class Trainer:
    """Builds the network, optimiser and pipeline for a config and runs epochs; knows no step
    names. Dtypes, device and memory layout are the `placement`'s (lab/train/precision.py)."""

    def __init__(
        self,
        config: Config,
        data: Cifar,
        device: torch.device,
        seed: int,
        account_phases: bool = True,
    ) -> None:
        self.config, self.device, self.seed = config, device, seed
        # Phase accounting is on in every timed run; off only where lab.bench measures its cost.
        self.account_phases = account_phases
        self.placement = Placement.from_config(config, device)
        seed_everything(seed)
        setup_start = time.perf_counter()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = config.cudnn_benchmark
        self.timer = Timer(device)
        self.clock = clock_for(device)
        self.pipeline = self._pipeline(data)
        self.whitening_s = 0.0
        whitened = config.whitening or config.patch_whitening
        filters = self._whitening(data) if whitened else None
        self.preprocess_s = self.pipeline.preprocess_s + self.whitening_s
        self.bn_momentum = run_bn_momentum(config, self.pipeline.train_size)
        self.model = self._model(filters)
        self.optimizer = _optimizer(self.model, config)
        self.muon = _muon(self.model, config)
        self.ema_rho = run_ema_rho(config, self.pipeline.train_size)
        self.ema = WeightAverage(self.model, self.ema_rho) if self.ema_rho else None
        self.lookahead = Lookahead(self.model) if config.lookahead_every else None
        self.total_steps = sum(steps_per_pass(config, self.pipeline.train_size))
        self.steps_done = 0  # optimiser steps over the run (Lookahead's clock)
        self.weight_average_updates = 0
        self.compile_s = 0.0
        self.scaler = self.placement.scaler()
        self.schedule = config.run_schedule
        self.peak_rate = max(rate for _, rate in self.schedule.knots)
        self.setup_s = time.perf_counter() - setup_start - self.preprocess_s
        # Drawn where the pipeline draws (the device pipeline: where its data is, no copy).
        self.bulk_generator = torch.Generator(self.pipeline.generator_device).manual_seed(seed + 1)
        self.rng_calls = 0
        self.warmup_s = 0.0
        self.views_per_batch = 0  # forward passes per test image in the last evaluation

    def _model(self, filters: torch.Tensor | None) -> torch.nn.Module:
        """The network on the device, in the run's precision and memory format."""
        config = replace(self.config, bn_momentum=self.bn_momentum)
        return self.placement.model(build_network(config, filters))

    def _pipeline(self, data: Cifar) -> Pipeline:
        if self.config.data_path == "device":
            return DevicePipeline(self.config, data, self.placement)
        if self.config.data_path == "airbench":
            return AirbenchPipeline(self.config, data, self.placement)
        return build_loader_pipeline(self.config, data, self.placement, self.seed)

    def _whitening(self, data: Cifar) -> torch.Tensor:
        """The whitening filters from a seeded sample of `whitening_images` training images
        (`whitening_sample`), timed as one-off preprocessing."""
        start = self.timer.now()
        sample = whitening_sample(len(data.train_labels), self.config)
        images = normalise(data.train_images[sample], self.device, torch.float32)
        compute = patch_whitening_filters if self.config.patch_whitening else whitening_filters
        filters = compute(images, self.config.whitening_eps)
        self.whitening_s = self.timer.now() - start
        return filters

    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss summed over the batch (Page's `loss.sum()`), scaled to a whole batch when
        the last one is short, so every step is the mean-loss step at the configured rate
        (`_optimizer`, `_set_lr`). Summed, an fp16 model's gradients are `batch_size` x
        larger than a mean's: at batch 512 and the ResNet-9's logit scale of 1/16 the mean's
        fall into fp16's subnormal range, where they lose precision (docs/series.md)."""
        with self.placement.autocast():
            logits = self.model(images)
        # PyTorch's smoothing is (1 - a) CE + a mean_k(-log softmax_k): the source's form.
        # In fp32: a sum of 512 losses in fp16 keeps ~3 significant digits.
        summed = F.cross_entropy(
            logits.float(), labels, label_smoothing=self.config.label_smoothing, reduction="sum"
        )
        return summed * (self.config.batch_size / len(labels))

    def _set_lr(self, epoch_index: int, step: int) -> None:
        """The schedule at this step, per summed example (divided by the batch size). Page's
        update reads it one step on (his step counter is incremented first), so its first
        step does not have rate 0."""
        position = step + (1 if self.config.sgd_update == "page" else 0)
        epoch = epoch_index + position / self.pipeline.steps_per_epoch
        rate = self.schedule(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self._group_rate(group, rate, epoch) / self.config.batch_size
        if self.muon is not None:
            # Muon's step is orthogonal, so the gradient's scale (summed or mean) does not
            # matter: its rate is `muon_lr` on the schedule's shape, not divided by the batch.
            for group in self.muon.param_groups:
                group["lr"] = self.config.muon_lr * self.config.lr_scale * rate / self.peak_rate

    def _group_rate(self, group: dict, rate: float, epoch: float) -> float:
        """A group's rate per mean example: the schedule's x its `lr_scale`; the stem's bias
        with `whitening_bias_decay` falls from the schedule's peak to 0 at its `until_epoch`
        (airbench94_muon's 1 - step / whiten_bias_train_steps)."""
        until = group.get("until_epoch")
        if until is None:
            return rate * group["lr_scale"]
        return self.peak_rate * group["lr_scale"] * max(0.0, 1 - epoch / until)

    def warm_up(self) -> float:
        """One forward and backward per training batch shape, one evaluation forward per test
        batch shape, on a copy of the model, before the timer starts (Page's `warmup_cudnn`):
        with `cudnn.benchmark` the first batch of a shape otherwise autotunes its kernels inside
        the timed region. The batches are the placement's (`Placement.warmup_shapes`,
        `blank_batch`): the run's shapes, dtype and layout. The copy leaves the run's weights,
        BatchNorm statistics, optimiser and RNG untouched. Returns the seconds it took."""
        start = self.timer.now()
        if self.compiles:
            self._warm_up_compiled()
            self.compile_s = self.timer.now() - start
        else:
            self._warm_up_batches(copy.deepcopy(self.model))
        self.warmup_s = self.timer.now() - start
        return self.warmup_s

    @property
    def compiles(self) -> bool:
        """`compile` acts on CUDA only: on a CPU the lab trains eagerly (docs/series.md)."""
        return self.config.compile != "none" and self.device.type == "cuda"

    def _warm_up_batches(self, model: torch.nn.Module) -> None:
        sizes = self.placement.warmup_shapes(self.pipeline.train_size, self.pipeline.test_size)
        train_sizes, test_sizes = sizes
        model.train()
        for size in train_sizes:
            images, labels = self.placement.blank_batch(size)
            with self.placement.autocast():
                logits = model(images)
            F.cross_entropy(logits.float(), labels, reduction="sum").backward()
        model.eval()
        with torch.no_grad():
            for size in test_sizes:
                self._logits(model, self.placement.blank_batch(size)[0])

    def _warm_up_compiled(self) -> None:
        """Compile the model in place (`compile`'s mode) and run the warm-up batches on it, so
        that compilation happens here, not in the timed region: once per graph, with the stem's
        bias trainable and frozen when `whitening_bias_epochs` switches it (airbench's two
        graphs). The weights and statistics are restored afterwards, the gradients dropped."""
        saved = copy.deepcopy(self.model.state_dict())
        self.model.compile(mode=self.config.compile)
        bias = whitening_bias(self.model, self.config)
        states = [True, False] if bias is not None and self.config.whitening_bias_epochs else [True]
        for trainable in states:
            if bias is not None:
                bias.requires_grad_(trainable)
            self._warm_up_batches(self.model)
        self.model.load_state_dict(saved)
        self.model.zero_grad(set_to_none=True)

    def _ledger(self) -> PhaseLedger:
        return PhaseLedger(self.clock) if self.account_phases else NoLedger(self.clock)

    def _step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        phase: Phase,
        ledger: PhaseLedger,
        epoch_index: int = 0,
    ) -> torch.Tensor:
        """One optimiser step (and a weight average's update when due: the EMA's, at the
        epoch's `step`; Lookahead's, on the run's step count from its start epoch); returns
        the loss. The profiler's `phase` labels keep the averages inside "optimizer" (as older
        traces have it); the ledger gives them their own phase."""
        with phase("forward"):
            ledger.enter("forward")
            loss = self._loss(images, labels)
        with phase("backward"):
            ledger.enter("backward")
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        with phase("optimizer"):
            ledger.enter("optimizer")
            for optimizer in self.optimizers:
                if self.scaler is not None:
                    self.scaler.step(optimizer)
                else:
                    optimizer.step()
            if self.scaler is not None:
                self.scaler.update()
            self.steps_done += 1
            if self.ema is not None and step % self.config.ema_every == 0:
                ledger.enter("weight_average")
                self.ema.update()
                self.weight_average_updates += 1
            if self._lookahead_due(epoch_index):
                ledger.enter("weight_average")
                rho = self.config.lookahead_decay_base**self.config.lookahead_every
                rho *= (self.steps_done / self.total_steps) ** self.config.lookahead_decay_pow
                self.weight_average_updates += self.lookahead.update(rho)  # type: ignore[union-attr]
        return loss

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer] if self.muon is None else [self.optimizer, self.muon]

    def _lookahead_due(self, epoch_index: int) -> bool:
        """Every `lookahead_every` steps of the run, from epoch `lookahead_start_epochs` (the
        source's test on the epoch index and its run-long step count)."""
        every = self.config.lookahead_every
        started = epoch_index >= self.config.lookahead_start_epochs
        return bool(every) and started and self.steps_done % every == 0

    def train_epoch(
        self,
        epoch_index: int,
        phase: Phase = no_phase,
        after_step: Callable[[], None] | None = None,
        max_steps: int | None = None,
    ) -> PassResult:
        """One pass (or its first `max_steps` steps). `phase` labels the parts of a step;
        `after_step` runs after each. The epoch's random draws (bulk choices, device-side
        augmentation) are inside the timed region: they are per-epoch work."""
        self._freeze_whitening_bias(epoch_index)
        self.model.train()
        # Summed on the device so the loop never forces a sync just to log the loss.
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float32)
        waited, seen, steps = 0.0, 0, 0
        ledger = self._ledger()
        start = self.timer.now()
        ledger.enter("train_startup")
        batches, up_front_calls = self.pipeline.epoch(self.bulk_generator)
        self.rng_calls += up_front_calls
        names = ("train_data_wait", "train_edge")
        timed = _timed_batches(batches, phase, ledger, names, self._first_batch_clock())
        for step, ((images, labels, rng_calls), wait) in enumerate(timed):
            ledger.enter("other")  # the step's bookkeeping: counters, the rate
            waited += wait
            self.rng_calls += int(rng_calls.sum())
            self._set_lr(epoch_index, step)
            with phase("h2d"):
                ledger.enter("h2d")
                images, labels = self.placement.inputs(images, labels)
            loss = self._step(images, labels, step, phase, ledger, epoch_index)
            ledger.enter("other")  # the loss sum, the caller's per-step hook
            loss_sum += loss.detach() * (len(labels) / self.config.batch_size)
            seen += len(labels)
            steps += 1
            if after_step is not None:
                after_step()
            if max_steps is not None and steps >= max_steps:
                break
        if self.lookahead is not None:  # the source copies back inside its timed region
            ledger.enter("weight_average")
            self.lookahead.copy_back()
        ledger.enter("train_edge")
        # A pass cut at `max_steps` leaves its loader's iterator alive in the generator:
        # closing it here shuts its workers down inside the timed region, as an exhausted
        # loader's do, instead of whenever it is collected.
        timed.close()
        mean_loss = float(loss_sum) / max(seen, 1)
        phases = ledger.close()
        elapsed = self.timer.now() - start
        return PassResult(elapsed, waited, mean_loss, steps, seen, phases)

    def _freeze_whitening_bias(self, epoch_index: int) -> None:
        """The stem's bias trains while `epoch_index < whitening_bias_epochs` (the source's
        test at each epoch's start). Frozen, its gradient stays None, so SGD skips it (no
        update, no decay, no momentum) and autograd stops at the first trained layer."""
        bias, until = whitening_bias(self.model, self.config), self.config.whitening_bias_epochs
        if bias is not None and until is not None:
            bias.requires_grad_(epoch_index < until)

    def _first_batch_clock(self) -> Callable[[], float]:
        """A first batch that queues device work (the device pipeline's augmentation) is
        waited for on the synchronising clock."""
        return self.timer.now if self.pipeline.first_batch_queues_device_work else time.perf_counter

    def _logits(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Evaluation logits; with flip TTA the mean over each image and its mirror (written
        as the source's (a + b) / 2), with multi-crop TTA the weighted sum over `tta_views`."""
        with self.placement.autocast():
            if self.config.tta == "multicrop":
                views = tta_views(images)
                self.views_per_batch = len(views)
                return sum(weight * model(view) for weight, view in views)  # type: ignore[return-value]
            logits = model(images)
            self.views_per_batch = 1
            if self.config.tta == "flip":
                logits = (logits + model(images.flip(3))) / 2
                self.views_per_batch = 2
            return logits

    @torch.no_grad()
    def evaluate(self, phase: Phase = no_phase) -> EvalResult:
        """Test-set pass. With an
        EMA the averaged copy is evaluated (and stays in eval mode, as in the source, so ghost
        BatchNorm averages its split statistics once)."""
        model = self.ema.model if self.ema is not None else self.model
        model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        waited = 0.0
        ledger = self._ledger()
        start = self.timer.now()
        ledger.enter("eval_startup")
        test_batches = self.pipeline.test_batches()
        names = ("eval_data_wait", "eval_edge")
        for (images, labels, _), wait in _timed_batches(test_batches, phase, ledger, names):
            waited += wait
            with phase("h2d"):
                ledger.enter("eval_h2d")
                images, labels = self.placement.inputs(images, labels)
            with phase("forward"):
                ledger.enter("eval_forward")
                logits = self._logits(model, images)
                correct += (logits.argmax(dim=1) == labels).sum()
        ledger.enter("eval_edge")
        accuracy = int(correct) / self.pipeline.test_size
        phases = ledger.close()
        elapsed = self.timer.now() - start
        return EvalResult(elapsed, waited, accuracy, phases)


EpochCallback = Callable[[EpochStats, int], None]


def _epoch_phases(trained: PassResult, evaluated: EvalResult) -> dict[str, float]:
    """The epoch's phases in vocabulary.PHASES' order, `other` the remainder of its timed
    region (the ledgers' own "other", the step bookkeeping, and the instants between a pass's
    clock reading and its ledger's first and last marks)."""
    phases = dict.fromkeys(PHASES, 0.0)
    for part in (trained.phases_s, evaluated.phases_s):
        for name, seconds in part.items():
            phases[name] += seconds
    named = sum(seconds for name, seconds in phases.items() if name != OTHER)
    phases[OTHER] = trained.seconds + evaluated.seconds - named
    return phases


def run_training(
    config: Config,
    data: Cifar,
    device: torch.device,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Train `config` on `data` (already subset) and measure everything the record needs."""
    trainer = Trainer(config, data, device, seed)
    trainer.warm_up()
    result = RunResult(
        device=str(device),
        precision=trainer.placement.precision,
        train_size=len(data.train_labels),
        test_size=len(data.test_labels),
        preprocess_s=trainer.preprocess_s,
        whitening_s=trainer.whitening_s,
        setup_s=trainer.setup_s,
        warmup_s=trainer.warmup_s,
        compile_s=trainer.compile_s,
        ema_rho=trainer.ema_rho,
        bn_momentum=trainer.bn_momentum,
    )
    # Garbage left by the previous run (another variant's network, loaders, arrays) would
    # otherwise be collected inside this run's timed region, charging one variant for another.
    gc.collect()
    cpu_main_start, cpu_children_start = _cpu_seconds()
    passes = steps_per_pass(config, trainer.pipeline.train_size)
    for epoch_index, steps in enumerate(passes):
        trained = trainer.train_epoch(epoch_index, max_steps=steps)
        evaluated = trainer.evaluate()
        stats = EpochStats(
            epoch=epoch_index + 1,
            train_s=trained.seconds,
            eval_s=evaluated.seconds,
            train_data_wait_s=trained.data_wait_s,
            eval_data_wait_s=evaluated.data_wait_s,
            train_loss=trained.mean_loss,
            test_accuracy=evaluated.accuracy,
            images_per_s=trained.images / trained.seconds,
            train_steps=trained.steps,
            trained_images=trained.images,
            phases_s=_epoch_phases(trained, evaluated),
        )
        result.epochs.append(stats)
        if on_epoch is not None:
            on_epoch(stats, len(passes))
    cpu_main_end, cpu_children_end = _cpu_seconds()
    result.cpu_main_s = cpu_main_end - cpu_main_start
    result.cpu_children_s = cpu_children_end - cpu_children_start
    result.worker_launches = trainer.pipeline.worker_launches
    result.rng_calls = trainer.rng_calls
    result.weight_average_updates = trainer.weight_average_updates
    result.eval_views = trainer.views_per_batch
    return result
