"""Precision and memory placement: one owner for what dtype, device and layout the run's tensors
have, so a change of any of them (channels_last, say) is made here and nowhere else.

`Placement` decides the model's dtype (fp32, or fp16 with BatchNorm optionally kept fp32),
autocast and its gradient scaler, the memory format of the model and its inputs, where and in
what form a batch reaches the model, whether loader batches are pinned, and the batches the
warm-up runs (the shapes training and evaluation will see, in the inputs' form). The trainer
asks it; no other module of `lab.train` branches on the precision.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lab.errors import LabError
from lab.recipe.config import Config

IMAGE_SHAPE = (3, 32, 32)  # one CIFAR-10 input, CHW


def resolve_precision(config: Config, device: torch.device) -> str:
    """'auto' is the original's fp16 on CUDA and fp32 on CPU (bf16/fp16 are slower on CPU)."""
    if config.precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return config.precision


def _check_autocast_runs(device: torch.device) -> None:
    """fp16 autocast needs the CPU's fp16 kernels (torch >= 2.4 has them for convs)."""
    if device.type != "cpu":
        return
    probe = torch.nn.Conv2d(3, 1, 3)
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            probe(torch.zeros(1, 3, 4, 4))
    except RuntimeError as error:
        raise LabError(f"--set precision=autocast: this CPU build cannot ({error})") from None


@dataclass(frozen=True)
class Placement:
    """The run's dtypes, device and memory layout (built by `from_config`)."""

    device: torch.device
    precision: str  # resolved: fp32, fp16 (`.half()`) or autocast (fp32 weights, fp16 math)
    bn_fp32: bool  # BatchNorm parameters and statistics stay fp32 in an fp16 model
    memory_format: torch.memory_format  # of the model's 4-d weights and of every input batch
    pin_memory: bool  # loader batches in page-locked host memory (CUDA only)
    batch_size: int  # training images per step (the scaler's first scale, warm-up shapes)
    test_batch_size: int  # test images per evaluation batch (warm-up shapes)
    drop_last: bool  # the short last training batch is dropped (warm-up shapes)

    @classmethod
    def from_config(cls, config: Config, device: torch.device) -> Placement:
        """The placement `config` asks for on `device`; a one-line LabError if it cannot run."""
        precision = resolve_precision(config, device)
        if precision == "autocast":
            _check_autocast_runs(device)
        return cls(
            device=device,
            precision=precision,
            bn_fp32=config.bn_precision == "fp32",
            # NHWC on CUDA (cuDNN's fast fp16 convolutions); a CPU keeps NCHW, the layout its
            # fp32 kernels are measured in here.
            memory_format=(
                torch.channels_last
                if config.channels_last and device.type == "cuda"
                else torch.contiguous_format
            ),
            pin_memory=config.pin_memory and device.type == "cuda",
            batch_size=config.batch_size,
            test_batch_size=config.test_batch_size,
            drop_last=config.drop_last,
        )

    @property
    def input_dtype(self) -> torch.dtype:
        """What the model's first layer takes: fp16 for an fp16 model; fp32 otherwise
        (autocast casts inside the model)."""
        return torch.float16 if self.precision == "fp16" else torch.float32

    def model(self, network: torch.nn.Module) -> torch.nn.Module:
        """The freshly built network on the device, in the run's dtype and memory format."""
        model = network.to(self.device)
        if self.precision == "fp16":
            model = model.half()  # the original: everything fp16, BN included
            if self.bn_fp32:
                for module in model.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.float()  # cuDNN's BN takes fp16 activations, fp32 parameters
        return model.to(memory_format=self.memory_format)

    def inputs(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch as the model takes it: on the device, in the input dtype and memory format
        (no copy where it already is: the device pipeline's batches)."""
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.precision == "fp16":
            images = images.half()
        return images.contiguous(memory_format=self.memory_format), labels

    def autocast(self) -> AbstractContextManager:
        """Mixed precision for `precision=autocast`; nothing otherwise."""
        if self.precision == "autocast":
            return torch.autocast(self.device.type, dtype=torch.float16)
        return nullcontext()

    def scaler(self) -> torch.amp.GradScaler | None:
        """autocast's gradient scaler, on the model's device. Its usual first scale (2^16)
        assumes a mean loss; the summed loss is already `batch_size` x larger, so it starts
        that much lower instead of skipping its first steps on overflow."""
        if self.precision != "autocast":
            return None
        return torch.amp.GradScaler(self.device.type, init_scale=2.0**16 / self.batch_size)

    def warmup_shapes(self, train_size: int, test_size: int) -> tuple[list[int], list[int]]:
        """Batch sizes the run's training and evaluation will see (a short last batch too)."""
        train = [min(self.batch_size, train_size)]
        if not self.drop_last and train_size % self.batch_size:
            train.append(train_size % self.batch_size)
        test = [min(self.test_batch_size, test_size)]
        if test_size % self.test_batch_size and test_size > self.test_batch_size:
            test.append(test_size % self.test_batch_size)
        return train, test

    def blank_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` zero images and labels in the form `inputs` gives a real batch, made on the
        device (the warm-up's batches: the same kernels as the run's, nothing copied)."""
        images = torch.zeros(size, *IMAGE_SHAPE, device=self.device, dtype=self.input_dtype)
        labels = torch.zeros(size, dtype=torch.int64, device=self.device)
        return images.contiguous(memory_format=self.memory_format), labels
