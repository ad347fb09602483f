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
from lab.schedule import PiecewiseLinear

# The DAWNBench schedule in epochs, with the kink at epoch 15 (SPEC.md).
DAWNBENCH_LR_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (15.0, 0.1),
    (15.0, 0.105),
    (30.0, 0.005),
    (35.0, 0.0),
)

CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("auto", "fp32", "fp16", "autocast"),
    "preprocessing": ("per_sample", "cached"),
    "augment_rng": ("per_sample", "bulk"),
}


@dataclass(frozen=True)
class Config:
    # --- data ---
    train_images: int | None = None  # images in the training subset (None: all 50,000)
    test_images: int | None = None  # images in the test subset (None: all 10,000)
    subset_seed: int = 0  # seed of the class-balanced subset choice (same seed, same images)
    # --- network ---
    width: int = 64  # channels of the first stage (64 = the original ResNet-18 widths)
    prep_bn: bool = True  # keep the duplicated BN-ReLU after the prep convolution
    # --- recipe ---
    epochs: int = 35  # passes over the training subset
    batch_size: int = 128  # training images per SGD step
    test_batch_size: int = 512  # test images per evaluation batch
    lr_knots: tuple[tuple[float, float], ...] = DAWNBENCH_LR_KNOTS  # (epoch, learning rate)
    momentum: float = 0.9  # SGD momentum (Nesterov when `nesterov`)
    nesterov: bool = True  # Nesterov momentum, as the original
    weight_decay: float = 5e-4  # L2 on every parameter, BatchNorm and biases included
    precision: str = "auto"  # auto: fp16 (`.half()`) on CUDA, fp32 on CPU; or fp32/fp16/autocast
    cudnn_benchmark: bool = True  # let cuDNN pick kernels by timing them (CUDA only)
    target_accuracy: float = 0.94  # test accuracy the run is judged against (fraction)
    # --- data pipeline ---
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
        positive = ("width", "epochs", "batch_size", "test_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise LabError(f"config {name}={getattr(self, name)}: must be >= 1")
        for name in ("train_workers", "test_workers"):
            if getattr(self, name) < 0:
                raise LabError(f"config {name}={getattr(self, name)}: must be >= 0")
        for name in ("train_images", "test_images"):
            value = getattr(self, name)
            if value is not None and value < 10:
                raise LabError(f"config {name}={value}: needs at least one image per class (10)")
        try:
            object.__setattr__(self, "lr_knots", self.schedule.knots)
        except ValueError as error:
            raise LabError(f"config lr_knots: {error}") from None

    @property
    def schedule(self) -> PiecewiseLinear:
        return PiecewiseLinear(self.lr_knots)

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
    return dataclasses.replace(config, **changes)
