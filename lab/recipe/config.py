"""The run configuration: plain, frozen data. Every field has a comment and a unit.

An ablation step is a transformation `Config -> Config` (see `ablations/`); the trainer and the
loaders read these fields and never mention a step by name.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass

from lab.errors import LabError
from lab.recipe.schedule import PiecewiseLinear
from lab.recipe.vocabulary import CLASSES

# The DAWNBench schedule in epochs, with the kink at epoch 15 (docs/article.md).
DAWNBENCH_LR_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (15.0, 0.1),
    (15.0, 0.105),
    (30.0, 0.005),
    (35.0, 0.0),
)

# The article's run length: a scaled preset's `epoch_scale` is its epochs / this.
ARTICLE_EPOCHS = 35

CHOICES: dict[str, tuple[str, ...]] = {
    "architecture": ("resnet18", "resnet9", "airbench"),
    "pool_order": ("act_then_pool", "pool_then_bn"),
    "activation": ("relu", "celu", "gelu"),
    "bn_precision": ("model", "fp32"),
    "precision": ("auto", "fp32", "fp16", "autocast"),
    "tta": ("none", "flip", "multicrop"),
    "data_path": ("loader", "device", "airbench"),
    "flip_mode": ("random", "alternating"),
    "optimizer": ("sgd", "muon"),
    "compile": ("none", "default", "max-autotune"),
    "preprocessing": ("per_sample", "cached"),
    "augment_rng": ("per_sample", "bulk"),
    "sgd_update": ("torch", "page"),
    "horizons": ("as_written", "scaled"),
    "bias_params": ("named", "batchnorm"),
}


@dataclass(frozen=True)
class Config:
    # --- data ---
    train_images: int | None = None  # images in the training subset (None: all 50,000)
    test_images: int | None = None  # images in the test subset (None: all 10,000)
    subset_seed: int = 0  # seed of the class-balanced subset choice (same seed, same images)
    # --- network ---
    architecture: str = "resnet18"  # resnet18: the DAWNBench pre-activation ResNet-18;
    # resnet9: Page's Part 4 network (prep, three conv-pool layers, two residual blocks);
    # airbench: Keller Jordan's airbench94 network (a 2x2 stem, three conv groups, no residuals)
    width: int = 64  # channels of the first stage (64: the original widths of every network)
    prep_bn: bool = True  # resnet18: keep the duplicated BN-ReLU after the prep convolution
    pool_order: str = "act_then_pool"  # resnet9's conv-pool layers: conv-BN-act-pool, or
    # pool_then_bn: conv-pool-BN-act (BN and activation on a quarter of the pixels)
    activation: str = "relu"  # relu, celu or gelu (tanh-free, PyTorch's default), everywhere
    celu_alpha: float = 0.075  # CELU's alpha (dimensionless; only read when activation=celu)
    logit_scale: float = 1.0  # multiplies the classifier's output (resnet9: 0.125)
    bn_splits: int = 1  # ghost BatchNorm: each training batch is normalised in this many
    # interleaved groups (example n in group n mod splits); 1: plain BatchNorm
    bn_scale_frozen: bool = False  # BatchNorm scales fixed at 1 and not trained
    bn_momentum: float = 0.1  # BatchNorm's running statistics per training step: stat <-
    # (1 - m) stat + m batch_stat (PyTorch's default and the source's); evaluation reads them
    bn_eps: float = 1e-5  # added to BatchNorm's variance (PyTorch's default; airbench: 1e-12)
    bn_precision: str = "model"  # model: BatchNorm in the model's dtype; fp32: BatchNorm
    # parameters and statistics stay fp32 in an fp16 model (no effect when the model is fp32)
    whitening: bool = False  # the prep convolution becomes a frozen 3x3 PCA-whitening conv
    # (27 filters from the training images' patches) followed by a learnable 1x1 conv
    patch_whitening: bool = False  # airbench: the 2x2 stem's 24 filters are set once from the
    # training images' 2x2 patches (12 PCA filters and their negations) and frozen; the stem's
    # BatchNorm gives way to a trainable bias
    whitening_bias_epochs: float | None = None  # patch_whitening: the stem's bias trains while
    # the epoch index (checked at each epoch's start, as the source) is below this, then stops,
    # and with it the backward into the stem (airbench's `whiten_bias_epochs`); None: it
    # trains throughout. In run epochs: a step writes article epochs x `epoch_scale`
    head_init_std: float | None = None  # the classifier's weights rescaled to this standard
    # deviation at init (airbench94_muon: 1); None: PyTorch's default init
    dirac_init: bool = False  # every 3x3 conv's first in_channels filters start as the identity
    # (torch.nn.init.dirac_), the others as PyTorch's default
    whitening_eps: float = 1e-2  # added to each eigenvalue before the inverse square root
    # (either whitening)
    whitening_images: int = 10_000  # training images whose patches give the PCA (a random
    # sample: the training set may be ordered by class; either whitening)
    whitening_seed: int = 0  # seed of that sample (same seed and set, same images)
    # --- recipe ---
    epochs: float = 35  # passes over the training subset (fractional: the last pass stops
    # after that fraction of its batches); a test evaluation follows every pass
    epoch_scale: float = 1.0  # run epochs per article epoch: steps write epoch counts and LR
    # knots in the article's epochs and multiply them by this (a scaled preset's epochs / 35)
    batch_size: int = 128  # training images per SGD step
    batch_scale: float = 1.0  # run images per step / the source's, for the steps that write
    # their source's batch (chapter 2, `lab.recipe.decoupled`): they write batch x this,
    # rounded, and their mean-loss rates x the same ratio, so a training set cut by this
    # factor keeps the source's steps per epoch and per-example rate (docs/presets.md)
    source_batch_size: int | None = None  # the batch such a step wrote, before batch_scale
    # (None: `batch_size` is as written); the horizons' source run uses it
    test_batch_size: int = 512  # test images per evaluation batch
    lr_knots: tuple[tuple[float, float], ...] = DAWNBENCH_LR_KNOTS  # (epoch, learning rate),
    # held at the last value after the last knot; the rate of a mean-over-the-batch loss
    lr_scale: float = 1.0  # multiplies every rate of `lr_knots` (dimensionless; 1: the rates
    # as the steps write them): a scale concession for a small run where the article's rates
    # diverge, set by hand with --set and recorded (docs/presets.md, "Rates at a small scale")
    momentum: float = 0.9  # SGD momentum (Nesterov when `nesterov`)
    nesterov: bool = True  # Nesterov momentum, as the original
    sgd_update: str = "torch"  # torch: torch.optim.SGD, rate read at the step's own position
    # (the first step's is 0); page: Page's Part 8 `nesterov_update` (each gradient keeps its
    # own rate inside the velocity) with the rate read one step on
    weight_decay: float = 5e-4  # L2 on every parameter, BatchNorm and biases included
    bias_lr_scale: float = 1.0  # learning-rate multiplier of the bias group (`bias_params`; in
    # the ResNet-9, the BatchNorm shifts only: its convolutions and classifier have no bias)
    bias_wd_scale: float = 1.0  # weight-decay multiplier of the same parameters
    bias_params: str = "named"  # which parameters those two scales take: named: every one
    # named "bias" (Page's split); batchnorm: BatchNorm's shifts only (airbench's split)
    label_smoothing: float = 0.0  # loss = (1 - a) CE + a mean_k(-log softmax_k); 0: plain CE
    ema_rho: float = 0.0  # weight EMA: ema <- rho ema + (1 - rho) weights; evaluation uses
    # the EMA copy; 0: no EMA
    ema_every: int = 5  # optimiser steps between EMA updates (the count restarts each epoch)
    lookahead_every: int = 0  # Lookahead (airbench's main5): every this many optimiser steps
    # (counted over the run) a weight average moves toward the weights and the weights are set
    # to it; after each epoch the weights are set to it again; 0: no Lookahead
    lookahead_start_epochs: float = 3.0  # run epochs before the first Lookahead update (a
    # step writes the source's 3 x `epoch_scale`)
    lookahead_decay_base: float = 0.95  # the average's decay per step: rho = base^every x
    lookahead_decay_pow: float = 3.0  # (step / total steps)^pow, so it averages harder late
    optimizer: str = "sgd"  # sgd: every parameter by SGD; muon: the 4-d filters by Muon
    # (airbench94_muon: Nesterov momentum on the raw gradient, the update orthogonalised by
    # Newton-Schulz in bf16, each filter renormalised first), the rest by SGD
    muon_lr: float = 0.24  # Muon's peak step (dimensionless: the update is orthogonal), on the
    # run's schedule shape (its rate / the schedule's peak)
    muon_momentum: float = 0.6  # Muon's Nesterov momentum
    muon_ns_steps: int = 3  # Newton-Schulz iterations per Muon update
    whitening_bias_decay: bool = False  # the stem's bias rate falls linearly to 0 at
    # `whitening_bias_epochs` (airbench94_muon), instead of the run's schedule
    compile: str = "none"  # torch.compile mode of the network on CUDA (none: eager); ignored on
    # a CPU, where the lab does not compile (docs/series.md, "GPU-only steps")
    horizons: str = "as_written"  # as_written: the EMA's rho as the step wrote it; scaled: its
    # memory keeps its fraction of the run's updates (lab/recipe/horizons.py, docs/presets.md)
    tta: str = "none"  # flip: evaluation averages the logits of each image and its mirror;
    # multicrop: airbench's 6 views, the image and its mirror (1/4 each) and the two one-pixel
    # diagonal shifts with their mirrors (1/8 each; lab/train/trainer.py `tta_views`)
    precision: str = "auto"  # auto: fp16 (`.half()`) on CUDA, fp32 on CPU; or fp32/fp16/autocast
    # (fp16 autocast with a gradient scaler), each on either device
    channels_last: bool = False  # NHWC weights and inputs on CUDA (airbench's layout); a CPU
    # keeps NCHW
    cudnn_benchmark: bool = True  # let cuDNN pick kernels by timing them (CUDA only)
    target_accuracy: float = 0.94  # test accuracy the run is judged against (fraction)
    # --- data pipeline ---
    data_path: str = "loader"  # loader: a DataLoader over samples; device: the whole set as
    # one tensor on the training device, augmented in groups once per epoch, no DataLoader
    translate: int = 2  # airbench data path: pixels of reflect padding, and the largest shift
    # of each image's random crop per axis (0: no crop)
    flip_mode: str = "random"  # airbench data path: random: each image mirrored with p=1/2 every
    # epoch; alternating: drawn once, then the whole set mirrored on odd epochs
    cutout: int = 0  # side in pixels of a square set to 0 inside each training image (0: none)
    augment_max_options: int = 200  # device path: at most this many distinct choices of
    # each transform per epoch (one per contiguous group of a shuffled set)
    drop_last: bool = False  # drop the last, smaller training batch of each epoch
    train_workers: int = 16  # DataLoader worker processes for training (0: main thread)
    test_workers: int = 16  # DataLoader worker processes for the test set (0: main thread)
    pin_memory: bool = True  # page-locked host batches (CUDA only; ignored on CPU)
    preprocessing: str = "per_sample"  # per_sample: pad/normalise every sample every epoch;
    # cached: pad, normalise and transpose the whole set once before training
    augment_rng: str = "per_sample"  # per_sample: 3 RNG calls per sample; bulk: 3 per epoch

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise LabError(f"config {name}={value!r}: must be one of {', '.join(allowed)}")
        positive = (
            "width",
            "batch_size",
            "test_batch_size",
            "bn_splits",
            "ema_every",
            "augment_max_options",
            "whitening_images",
            "muon_ns_steps",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise LabError(f"config {name}={getattr(self, name)}: must be >= 1")
        for name in (
            "epochs",
            "epoch_scale",
            "logit_scale",
            "celu_alpha",
            "lr_scale",
            "batch_scale",
            "bn_eps",
            "muon_lr",
            "lookahead_decay_base",
        ):
            if not getattr(self, name) > 0:
                raise LabError(f"config {name}={getattr(self, name)}: must be > 0")
        self._check_ranges()
        for name in ("train_workers", "test_workers"):
            if getattr(self, name) < 0:
                raise LabError(f"config {name}={getattr(self, name)}: must be >= 0")
        for name in ("train_images", "test_images"):
            value = getattr(self, name)
            if value is not None and value < CLASSES:
                raise LabError(
                    f"config {name}={value}: needs at least one image per class ({CLASSES})"
                )
        try:
            object.__setattr__(self, "lr_knots", self.schedule.knots)
        except ValueError as error:
            raise LabError(f"config lr_knots: {error}") from None

    def _check_ranges(self) -> None:
        if not 0 <= self.label_smoothing < 1:
            raise LabError(f"config label_smoothing={self.label_smoothing}: must be in [0, 1)")
        if not 0 <= self.ema_rho < 1:
            raise LabError(f"config ema_rho={self.ema_rho}: must be in [0, 1)")
        if not 0 < self.bn_momentum <= 1:
            raise LabError(f"config bn_momentum={self.bn_momentum}: must be in (0, 1]")
        self._check_chapter2()
        if not 0 <= self.cutout <= 32:
            raise LabError(f"config cutout={self.cutout}: must be 0 to 32 pixels")
        if self.patch_whitening and self.architecture != "airbench":
            raise LabError("config patch_whitening=true: needs architecture=airbench (a 2x2 stem)")
        if self.whitening_bias_epochs is not None and not self.patch_whitening:
            raise LabError("config whitening_bias_epochs: needs patch_whitening=true")
        if self.whitening_bias_epochs is not None and self.whitening_bias_epochs < 0:
            raise LabError(
                f"config whitening_bias_epochs={self.whitening_bias_epochs}: must be >= 0"
            )
        if self.whitening and self.architecture == "airbench":
            raise LabError(
                "config whitening=true: the 3x3 whitening stem is the ResNets'; airbench takes "
                "patch_whitening=true"
            )
        # Ghost BatchNorm views a batch as (N / splits, splits x C, H, W): every training batch
        # must split evenly, so the last, smaller one has to go.
        if self.bn_splits > 1 and (self.batch_size % self.bn_splits or not self.drop_last):
            raise LabError(
                f"config bn_splits={self.bn_splits}: needs batch_size divisible by it "
                f"(batch_size={self.batch_size}) and drop_last=true (drop_last={self.drop_last})"
            )

    def _check_chapter2(self) -> None:
        """The fields of airbench's mechanisms: each needs the part of the recipe it acts on."""
        if self.flip_mode == "alternating" and self.data_path != "airbench":
            raise LabError("config flip_mode=alternating: needs data_path=airbench")
        if not 0 <= self.translate <= 8:
            raise LabError(f"config translate={self.translate}: must be 0 to 8 pixels")
        if self.lookahead_every < 0:
            raise LabError(f"config lookahead_every={self.lookahead_every}: must be >= 0")
        if self.lookahead_every and self.ema_rho:
            raise LabError(
                "config lookahead_every: Lookahead and the weight EMA (ema_rho) exclude "
                "each other; set one"
            )
        if not 0 <= self.muon_momentum < 1:
            raise LabError(f"config muon_momentum={self.muon_momentum}: must be in [0, 1)")
        if self.whitening_bias_decay and self.whitening_bias_epochs is None:
            raise LabError("config whitening_bias_decay=true: needs whitening_bias_epochs")
        if self.head_init_std is not None and not self.head_init_std > 0:
            raise LabError(f"config head_init_std={self.head_init_std}: must be > 0")

    @property
    def schedule(self) -> PiecewiseLinear:
        """The knots as written (the steps' rates)."""
        return PiecewiseLinear(self.lr_knots)

    @property
    def run_schedule(self) -> PiecewiseLinear:
        """The rates the run uses: the knots' rates times `lr_scale`."""
        return PiecewiseLinear(tuple((e, rate * self.lr_scale) for e, rate in self.lr_knots))

    def to_dict(self) -> dict[str, typing.Any]:
        """JSON-ready dict; `lr_knots` as a list of `[epoch, lr]` pairs."""
        data = dataclasses.asdict(self)
        data["lr_knots"] = self.schedule.as_lists()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, typing.Any]) -> Config:
        data = dict(data)
        data["lr_knots"] = tuple(tuple(knot) for knot in data["lr_knots"])
        return cls(**data)


def field_names() -> list[str]:
    return [field.name for field in dataclasses.fields(Config)]


def _parse_value(key: str, text: str, annotation: typing.Any) -> typing.Any:
    """Parse `text` as the type of field `key`; raise LabError naming the flag otherwise."""
    optional = type(None) in typing.get_args(annotation)
    base = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
    if optional and text.lower() in ("none", "null", "all"):
        return None
    try:
        if base is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is str:
            return text
        knots = json.loads(text)  # lr_knots: [[epoch, lr], ...]
        return tuple((float(epoch), float(lr)) for epoch, lr in knots)
    except (ValueError, TypeError) as error:
        raise LabError(f"--set {key}={text}: cannot parse as {base.__name__} ({error})") from None


def apply_overrides(config: Config, assignments: list[str]) -> Config:
    """Apply `--set key=value` assignments with typed parsing.

    Changing `epochs` without also setting `lr_knots` stretches the schedule to the new length,
    the same way presets scale the 35-epoch schedule.
    """
    hints = typing.get_type_hints(Config)
    changes: dict[str, typing.Any] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        key = key.strip()
        if not separator:
            raise LabError(f"--set {assignment}: expected key=value")
        if key not in hints:
            raise LabError(f"--set {key}: unknown key; valid keys: {', '.join(field_names())}")
        changes[key] = _parse_value(key, text.strip(), hints[key])
    if "epochs" in changes and "lr_knots" not in changes:
        changes["lr_knots"] = config.schedule.scaled_to(changes["epochs"]).knots
    if "epochs" in changes and "epoch_scale" not in changes:
        # Later steps' epoch counts shrink or stretch in the same proportion.
        changes["epoch_scale"] = config.epoch_scale * changes["epochs"] / config.epochs
    return dataclasses.replace(config, **changes)


def with_article_epochs(
    config: Config, epochs: float, knots: tuple[tuple[float, float], ...]
) -> Config:
    """The epoch count and LR knots a step states in the article's epochs, scaled to the run
    by `epoch_scale`: a step that cuts 35 to 30 epochs cuts the same fraction at any scale."""
    scale = config.epoch_scale
    return dataclasses.replace(
        config,
        epochs=epochs * scale,
        lr_knots=tuple((epoch * scale, lr) for epoch, lr in knots),
    )
