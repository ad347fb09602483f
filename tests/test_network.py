import pytest
import torch
from torch import nn

from lab.recipe.config import Config
from lab.train.network import build_airbench, build_resnet18, count_parameters, flops_per_image


def resnet18(width: int = 64, prep_bn: bool = True) -> nn.Module:
    return build_resnet18(Config(width=width, prep_bn=prep_bn))


def test_parameter_counts_match_the_original():
    assert count_parameters(resnet18(64, prep_bn=True)) == 5_205_962
    assert count_parameters(resnet18(64, prep_bn=False)) == 5_205_834


def _conv_macs(c_in: int, c_out: int, kernel: int, size: int) -> int:
    return c_in * c_out * kernel * kernel * size * size


def test_flops_per_image_match_a_count_by_hand():
    # Forward multiply-accumulates of the ResNet-18 (docs/article.md: 2,756,474,880
    # forward+backward FLOPs per image, the article's ~2.8e9): the prep conv, then per stage
    # two 3x3 convs per block (the first strided from stage 2 on, with a 1x1 projection), and
    # the linear layer.
    macs = _conv_macs(3, 64, 3, 32) + 4 * _conv_macs(64, 64, 3, 32)
    for c_in, c_out, size in ((64, 128, 16), (128, 256, 8), (256, 256, 4)):
        macs += _conv_macs(c_in, c_out, 3, size) + _conv_macs(c_in, c_out, 1, size)
        macs += 3 * _conv_macs(c_out, c_out, 3, size)
    macs += 512 * 10
    first_layer_input_grad = _conv_macs(3, 64, 3, 32)  # autograd skips the image's gradient
    # Backward costs two forwards (input and weight gradients) but the first layer's input.
    assert flops_per_image(Config()) == 2 * (3 * macs - first_layer_input_grad) == 2_756_474_880


def test_duplicated_bn_relu_is_present_and_removable():
    with_dup = resnet18(64, prep_bn=True)
    prep = with_dup[0]
    assert [type(m) for m in prep] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    # Block 1 starts with its own BN-ReLU on the prep's output: the duplicate.
    assert isinstance(with_dup[1].bn1, nn.BatchNorm2d)
    without = resnet18(64, prep_bn=False)
    assert [type(m) for m in without[0]] == [nn.Conv2d]


def test_structure_matches_spec():
    model = resnet18(64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    blocks = list(model)[1:9]
    widths = [(b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride[0]) for b in blocks]
    assert widths == [
        (64, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 256, 2),
        (256, 256, 1),
    ]
    assert [b.shortcut is not None for b in blocks] == [
        False,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    head = model[-1].linear
    assert (head.in_features, head.out_features) == (512, 10) and head.bias is not None


@pytest.mark.parametrize("width", [4, 16])
def test_width_multiplier_scales_and_runs(width):
    model = resnet18(width)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert model[-1].linear.in_features == 8 * width


def test_width_must_be_positive():
    from lab.errors import LabError

    with pytest.raises(LabError, match="width"):
        Config(width=0)


def airbench(width: int = 64) -> nn.Module:
    return build_airbench(Config(architecture="airbench", width=width, bn_scale_frozen=True))


def test_airbench_parameter_count_matches_its_readme():
    """airbench's README gives 1,971,640 parameters: every parameter but the BatchNorm scales,
    which the source creates and freezes at 1 (`weight=False`). The lab counts trainable
    parameters too (`count_parameters`), so the module's whole count is larger by the frozen
    scales: the stem's BatchNorm (24) and each group's two (its width each), 1,176."""
    model = airbench()
    assert count_parameters(model) == 1_971_640
    frozen_scales = 24 + 2 * 64 + 2 * 256 + 2 * 256
    assert sum(p.numel() for p in model.parameters()) == 1_971_640 + frozen_scales


def test_airbench_maps_shrink_as_the_source_says():
    model = airbench(8).eval()
    sizes = []
    hooks = [
        block.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
        for block in model[:5]
    ]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for hook in hooks:
        hook.remove()
    assert sizes == [31, 15, 7, 3, 1]


def test_airbench_flops_per_image_match_a_count_by_hand():
    macs = _conv_macs(3, 24, 2, 31)  # the 2x2 stem, no padding: 31x31
    for c_in, c_out, size in ((24, 64, 31), (64, 256, 15), (256, 256, 7)):
        macs += _conv_macs(c_in, c_out, 3, size)  # before the group's max-pool
        macs += _conv_macs(c_out, c_out, 3, (size - 1) // 2)  # after it
    macs += 256 * 10
    stem_input_grad = _conv_macs(3, 24, 2, 31)
    config = Config(architecture="airbench", bn_scale_frozen=True)
    assert flops_per_image(config) == 2 * (3 * macs - stem_input_grad)
