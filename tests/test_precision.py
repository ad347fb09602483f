"""The placement (lab/train/precision.py): the model's dtypes, the inputs' form, autocast, the
scaler and the warm-up's batches follow from the config, and a memory format set there alone
reaches the model, every batch and the warm-up (docs/writing-a-step.md)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lab.errors import LabError
from lab.recipe.config import Config
from lab.train.network import build_network
from lab.train.precision import Placement

CPU = torch.device("cpu")
SMALL = Config(architecture="resnet9", width=4, batch_size=32, test_batch_size=64)


def placement(**fields) -> Placement:
    return Placement.from_config(dataclasses.replace(SMALL, **fields), CPU)


def batchnorms(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize(
    "precision,bn_precision,weights,norms",
    [
        ("fp32", "model", torch.float32, torch.float32),
        ("fp32", "fp32", torch.float32, torch.float32),
        ("fp16", "model", torch.float16, torch.float16),
        ("fp16", "fp32", torch.float16, torch.float32),
        ("autocast", "model", torch.float32, torch.float32),
    ],
)
def test_the_models_dtypes_follow_precision_and_bn_precision(
    precision, bn_precision, weights, norms
):
    chosen = placement(precision=precision, bn_precision=bn_precision)
    model = chosen.model(build_network(dataclasses.replace(SMALL, precision=precision), None))
    norm_ids = {id(p) for m in batchnorms(model) for p in m.parameters()}
    others = [p for p in model.parameters() if id(p) not in norm_ids]
    assert others and all(p.dtype == weights for p in others)
    assert all(p.dtype == norms for m in batchnorms(model) for p in m.parameters())
    statistics = [b for m in batchnorms(model) for b in m.buffers() if b.is_floating_point()]
    assert statistics and all(b.dtype == norms for b in statistics)


def test_auto_is_fp32_on_the_cpu_and_only_autocast_has_a_scaler_and_a_context():
    auto = placement()
    assert auto.precision == "fp32" and auto.scaler() is None and not auto.pin_memory
    with auto.autocast():
        assert not torch.is_autocast_enabled("cpu")
    mixed = placement(precision="autocast")
    scaler = mixed.scaler()
    assert scaler is not None and scaler.get_scale() == 2.0**16 / SMALL.batch_size
    with mixed.autocast():
        assert torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "autocast"])
def test_the_warm_ups_batches_have_the_form_of_a_real_batch(precision):
    chosen = placement(precision=precision)
    host = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    images, labels = chosen.inputs(*host)
    blank_images, blank_labels = chosen.blank_batch(8)
    assert images.dtype == blank_images.dtype == chosen.input_dtype
    assert images.stride() == blank_images.stride() and images.shape == blank_images.shape
    assert labels.dtype == blank_labels.dtype == torch.int64
    assert not blank_images.any()


def test_one_memory_format_reaches_the_model_the_batches_and_the_warm_up():
    """The worked channels_last example of docs/writing-a-step.md: the field set in one place."""
    chosen = dataclasses.replace(placement(), memory_format=torch.channels_last)
    model = chosen.model(build_network(SMALL, None))
    convolutions = [p for p in model.parameters() if p.dim() == 4]
    assert convolutions
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    images, _ = chosen.inputs(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.int64))
    blank, _ = chosen.blank_batch(4)
    for batch in (images, blank):
        assert batch.is_contiguous(memory_format=torch.channels_last)
        assert not batch.is_contiguous()
    assert placement().inputs(torch.rand(4, 3, 32, 32), torch.zeros(4))[0].is_contiguous()


def test_warm_up_shapes_include_a_short_last_batch_unless_it_is_dropped():
    assert placement().warmup_shapes(100, 150) == ([32, 4], [64, 22])
    assert placement(drop_last=True).warmup_shapes(100, 150) == ([32], [64, 22])
    train, test = placement().warmup_shapes(20, 50)  # a set smaller than one batch
    assert set(train) == {20} and test == [50]


def test_autocast_that_the_cpu_cannot_run_is_a_one_line_error(monkeypatch):
    def no_fp16(*args, **kwargs):
        raise RuntimeError("no fp16 kernels")

    monkeypatch.setattr(torch.nn.Conv2d, "forward", no_fp16)
    with pytest.raises(LabError, match="precision=autocast: this CPU build cannot"):
        placement(precision="autocast")
