"""airbench's network pieces (chapter 2), checked by what they must do: the dirac filters pass
their input through, the patch-whitening filters whiten the real images' 2x2 patches, the
whitened stem is frozen with a trainable bias, and the network trains end to end on real data.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lab.errors import LabError
from lab.recipe.config import Config
from lab.recipe.presets import PRESETS
from lab.train.data import subset
from lab.train.device_data import normalise
from lab.train.network import build_network, count_parameters
from lab.train.trainer import (
    Trainer,
    _optimizer,
    patch_whitening_filters,
    run_training,
    tta_views,
)

_AIRBENCH_FIELDS = {
    "architecture": "airbench",
    "activation": "gelu",
    "bn_scale_frozen": True,
    "bn_eps": 1e-12,
    "width": 8,
    "train_workers": 0,
    "test_workers": 0,
}
AIRBENCH = Config(architecture="airbench", activation="gelu", bn_scale_frozen=True, bn_eps=1e-12)


def _convs_3x3(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def test_dirac_filters_pass_their_input_through():
    torch.manual_seed(0)
    model = build_network(dataclasses.replace(AIRBENCH, width=24, dirac_init=True))
    plain = build_network(dataclasses.replace(AIRBENCH, width=24))
    for conv, other in zip(_convs_3x3(model), _convs_3x3(plain), strict=True):
        x = torch.randn(2, conv.in_channels, 7, 7)
        identity = F.conv2d(x, conv.weight[: conv.in_channels], padding=1)
        assert torch.equal(identity, x)
        rest = conv.weight[conv.in_channels :]
        if len(rest):  # the other filters keep PyTorch's default initialisation
            spread, default = float(rest.detach().std()), float(other.weight.detach().std())
            assert spread == pytest.approx(default, rel=0.2)


@pytest.fixture(scope="module")
def images(real_cifar):
    data = subset(real_cifar, 2000, 100, 0)
    return normalise(data.train_images, torch.device("cpu"), torch.float32)


def test_patch_whitening_filters_whiten_the_patches(images):
    eps = 5e-4
    filters = patch_whitening_filters(images, eps)
    assert filters.shape == (24, 3, 2, 2)
    assert torch.equal(filters[12:], -filters[:12])
    out = F.conv2d(images, filters[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = out.T @ out / len(out)
    patches = F.unfold(images, 2).transpose(1, 2).reshape(-1, 12)
    values = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    # diag(lambda / (lambda + eps)): the identity where a component's variance is far above
    # eps, nothing off the diagonal. The faintest components (variance ~1e-4, under eps) come
    # from a float32 eigendecomposition, as the source's do, so they are good to ~5e-3 only.
    expected = torch.diag(values / (values + eps))
    strong = values > 10 * eps
    assert torch.allclose(covariance[strong][:, strong], expected[strong][:, strong], atol=2e-3)
    assert torch.allclose(covariance, expected, atol=1e-2)
    assert covariance.diagonal()[:6].min() > 0.99  # the 6 strongest of 12 components


def test_the_whitened_stem_is_frozen_with_a_trainable_bias(images):
    config = dataclasses.replace(AIRBENCH, patch_whitening=True)
    model = build_network(config, patch_whitening_filters(images, 5e-4))
    stem = model[0]
    assert [type(m) for m in stem] == [nn.Conv2d, nn.GELU]
    assert not stem[0].weight.requires_grad and stem[0].bias.requires_grad
    assert torch.equal(stem[0].bias, torch.zeros(24))
    # main0's 1,971,640 trainable, less the 288 whitening weights (frozen) and the stem
    # BatchNorm's 24 shifts (gone), plus the conv's 24 biases.
    assert count_parameters(model) == 1_971_640 - 288


@pytest.mark.parametrize(
    "fields",
    [{"patch_whitening": True}, {"architecture": "airbench", "whitening": True}],
)
def test_whitening_stems_belong_to_their_networks(fields):
    with pytest.raises(LabError, match="whitening"):
        Config(**fields)


def test_airbench_trains_on_real_data(real_cifar):
    """The whitened, dirac-initialised network at the smoke preset's scale, end to end."""
    smoke = PRESETS["smoke"].config
    config = dataclasses.replace(
        smoke,
        **_AIRBENCH_FIELDS,
        patch_whitening=True,
        dirac_init=True,
        whitening_images=500,
        whitening_eps=5e-4,
        batch_size=100,
    )
    data = subset(real_cifar, config.train_images, config.test_images, 0)
    result = run_training(config, data, torch.device("cpu"), 0)
    losses = [epoch.train_loss for epoch in result.epochs]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]
    assert result.whitening_s > 0


def test_multicrop_views_are_the_documented_shifts():
    images = torch.randn(3, 3, 32, 32)
    views = tta_views(images)
    assert [weight for weight, _ in views] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    assert sum(weight for weight, _ in views) == 1
    (_, plain), (_, mirror), (_, up_left), (_, up_left_mirror) = views[:4]
    (_, down_right), (_, down_right_mirror) = views[4:]
    assert torch.equal(plain, images) and torch.equal(mirror, images.flip(3))
    # One pixel diagonally: the content moves down-right (the view starts one pixel up-left of
    # the image), or up-left; the border pixel is the reflection.
    assert torch.equal(up_left[:, :, 1:, 1:], images[:, :, :-1, :-1])
    assert torch.equal(up_left[:, :, 0, 1:], images[:, :, 1, :-1])
    assert torch.equal(down_right[:, :, :-1, :-1], images[:, :, 1:, 1:])
    assert torch.equal(up_left_mirror, up_left.flip(3))
    assert torch.equal(down_right_mirror, down_right.flip(3))


def test_multicrop_evaluation_weighs_the_six_views(real_cifar):
    config = dataclasses.replace(
        PRESETS["smoke"].config, **{**_AIRBENCH_FIELDS, "tta": "multicrop"}
    )
    trainer = Trainer(config, subset(real_cifar, 500, 200, 0), torch.device("cpu"), 0)
    model = trainer.model.eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = sum(weight * model(view) for weight, view in tta_views(images))
        assert torch.allclose(trainer._logits(model, images), expected)
    assert 0 <= trainer.evaluate().accuracy <= 1


def test_the_whitening_bias_stops_training_after_its_epochs(real_cifar):
    """airbench's `whiten_bias_epochs`: the bias trains in epoch 0, is frozen from epoch 1 on
    (no update, no decay, no momentum), and the stem then needs no backward at all."""
    config = dataclasses.replace(
        PRESETS["smoke"].config,
        **_AIRBENCH_FIELDS,
        patch_whitening=True,
        whitening_bias_epochs=1,
        whitening_images=500,
        batch_size=100,
        lr_knots=((0, 0.1), (2, 0.1)),  # a constant rate: the bias moves while it trains
    )
    trainer = Trainer(config, subset(real_cifar, 500, 200, 0), torch.device("cpu"), 0)
    bias = trainer.model[0][0].bias
    before = bias.detach().clone()
    trainer.train_epoch(0)
    after_first = bias.detach().clone()
    assert not torch.equal(before, after_first)
    trainer.train_epoch(1)
    assert torch.equal(bias, after_first) and bias.grad is None
    assert not trainer.model[0](torch.zeros(1, 3, 32, 32)).requires_grad


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"whitening_bias_epochs": 3.0}, "needs patch_whitening"),
        ({**_AIRBENCH_FIELDS, "patch_whitening": True, "whitening_bias_epochs": -1.0}, ">= 0"),
    ],
)
def test_a_bad_whitening_bias_freeze_is_a_one_line_error(fields, fragment):
    with pytest.raises(LabError, match=fragment) as error:
        Config(**fields)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("split", "stem_bias_in_group"), [("named", True), ("batchnorm", False)])
def test_the_bias_group_follows_its_split(images, split, stem_bias_in_group):
    """Page's split puts every parameter named "bias" in the x64 group; airbench's
    (`main3_scalebias`, 'norm' in the name) only BatchNorm's shifts, not the stem's bias."""
    config = dataclasses.replace(
        AIRBENCH, patch_whitening=True, bias_params=split, bias_lr_scale=64.0
    )
    model = build_network(config, patch_whitening_filters(images, 5e-4))
    weights, biases = _optimizer(model, config).param_groups
    in_group = {id(p) for p in biases["params"]}
    shifts = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert shifts and all(id(shift) in in_group for shift in shifts)
    assert (id(model[0][0].bias) in in_group) == stem_bias_in_group
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(map(id, weights["params"] + biases["params"])) == sorted(trainable)
    assert biases["lr_scale"] == 64.0
