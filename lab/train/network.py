"""The networks, built from config fields alone: the DAWNBench ResNet-18 of Part 1 and Page's
ResNet-9 of Part 4, with the layer-level options the later parts of the series turn on
(docs/article.md, "Parts 2-8, step by step").

The ResNet-18 (Ben Johnson's `bkj/basenet` entry) is a pre-activation ResNet-18 whose last stage
is 256 wide, with a concatenated average+max pooling head. One quirk matters for the ablations:
the prep convolution is followed by BN-ReLU, and block 1 immediately applies its own BN-ReLU
again ("the duplicated BN-ReLU"); `prep_bn=False` removes the prep's (the article's step 1).

The ResNet-9: prep conv-BN-act (64), then layer1 conv-BN-act 128 + max-pool + a residual block,
layer2 conv-BN-act 256 + max-pool, layer3 conv-BN-act 512 + max-pool + a residual block, a
global max-pool and a bias-free linear layer whose output is scaled by `logit_scale`. Every
convolution is 3x3, stride 1, padding 1, bias-free.

The airbench network (Keller Jordan's airbench94, chapter 2; the zoo's `main0_network`): a 2x2
convolution without padding from 3 to 24 channels (2 x 3 x 2^2, the width the patch whitening
will later fill), BN-act; three groups of conv 3x3 -> max-pool 2 -> BN -> act -> conv 3x3 -> BN
-> act, `width` 64 giving 64, 256, 256; a 3x3 max-pool of the 3x3 map, a bias-free linear layer
and the logit scale. No residual branches. The stem is `main0_network`'s: a bias-free conv
then BatchNorm (../shared/SPEC.md describes it with a bias and no BatchNorm, which is
`main1_whiten`'s stem, where the whitening filters arrive: read from the zoo's scripts at
commit 1a8b762).

Options every network honours: the activation (ReLU or CELU), ghost BatchNorm (`bn_splits`),
frozen BatchNorm scales, the logit scale, and the whitening stem (a frozen 3x3 PCA conv with 27
filters, then a learnable 1x1 conv, replacing the prep convolution). The whitening filters are
computed from the training data by `whitening_filters` and passed in; without them (counting
parameters and FLOPs) the frozen filters are zeros of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from lab.recipe.config import Config

WHITENING_PATCH = 3  # 3x3 patches of 3 channels: 27-dimensional
WHITENING_FILTERS = 3 * WHITENING_PATCH * WHITENING_PATCH


class GhostBatchNorm(nn.BatchNorm2d):
    """BatchNorm over `splits` interleaved groups of each training batch (example n in group
    n mod splits), sharing one scale and shift, with running statistics kept per group.

    Training views the batch as (N / splits, splits x C, H, W), so the statistics are per group
    and per channel. On the switch from training to evaluation the per-group statistics are
    averaged (once per switch), and evaluation is plain BatchNorm with the first C entries.
    """

    def __init__(self, channels: int, splits: int) -> None:
        super().__init__(channels)
        self.splits = splits
        self.running_mean = torch.zeros(channels * splits)
        self.running_var = torch.ones(channels * splits)

    def train(self, mode: bool = True) -> GhostBatchNorm:
        if self.training and not mode:
            for stats in (self.running_mean, self.running_var):
                # In place: a weight average holding these tensors keeps following them.
                stats.copy_(
                    stats.view(self.splits, self.num_features).mean(dim=0).repeat(self.splits)
                )
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.training:
            return F.batch_norm(
                x,
                self.running_mean[:c],
                self.running_var[:c],
                self.weight,
                self.bias,
                False,
                self.momentum,
                self.eps,
            )
        grouped = F.batch_norm(
            x.reshape(n // self.splits, c * self.splits, h, w),
            self.running_mean,
            self.running_var,
            self.weight.repeat(self.splits),
            self.bias.repeat(self.splits),
            True,
            self.momentum,
            self.eps,
        )
        return grouped.view(n, c, h, w)


class Options:
    """The layer factories a config implies: `norm(channels)` and `act()`."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def norm(self, channels: int) -> nn.BatchNorm2d:
        config = self.config
        bn = (
            GhostBatchNorm(channels, config.bn_splits)
            if config.bn_splits > 1
            else nn.BatchNorm2d(channels)
        )
        bn.momentum = config.bn_momentum
        bn.eps = config.bn_eps
        if config.bn_scale_frozen:
            bn.weight.requires_grad_(False)  # stays at its initial 1
        return bn

    def act(self) -> nn.Module:
        if self.config.activation == "celu":
            return nn.CELU(alpha=self.config.celu_alpha)
        if self.config.activation == "gelu":
            return nn.GELU()
        return nn.ReLU()


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def whitening_stem(out_channels: int, filters: torch.Tensor | None) -> list[nn.Module]:
    """Frozen 3x3 whitening conv (3 -> 27) then a learnable 1x1 conv (27 -> out)."""
    whiten = nn.Conv2d(3, WHITENING_FILTERS, WHITENING_PATCH, padding=1, bias=False)
    with torch.no_grad():
        whiten.weight.copy_(filters if filters is not None else torch.zeros_like(whiten.weight))
    whiten.weight.requires_grad_(False)
    return [whiten, nn.Conv2d(WHITENING_FILTERS, out_channels, 1, bias=False)]


class PreActBlock(nn.Module):
    """`a = relu(bn1(x))`; conv3x3(a) -> relu(bn2) -> conv3x3, plus a (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, options: Options) -> None:
        super().__init__()
        self.bn1 = options.norm(in_channels)
        self.act1 = options.act()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = options.norm(out_channels)
        self.act2 = options.act()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        needs_projection = stride != 1 or in_channels != out_channels
        # The original projects from the *activated* input `a`, not from `x`.
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if needs_projection
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act1(self.bn1(x))
        shortcut = self.shortcut(a) if self.shortcut is not None else x
        out = self.conv1(a)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class ConcatPoolHead(nn.Module):
    """Global average pool and global max pool, concatenated, then a linear classifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)
        return self.linear(pooled.flatten(1))


def stage_widths(width: int) -> tuple[int, int, int, int]:
    """Output channels of the ResNet-18's four stages: (w, 2w, 4w, 4w); 64 gives 64-256."""
    return (width, 2 * width, 4 * width, 4 * width)


def build_resnet18(
    config: Config, whitening: torch.Tensor | None = None, num_classes: int = 10
) -> nn.Sequential:
    """The DAWNBench ResNet-18 with PyTorch's default initialisation; `width` scales every layer
    (64 is the original) and `prep_bn` keeps the duplicated BN-ReLU."""
    options, width = Options(config), config.width
    prep: list[nn.Module] = (
        whitening_stem(width, whitening)
        if config.whitening
        else [nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)]
    )
    if config.prep_bn:
        prep += [options.norm(width), options.act()]
    layers: list[nn.Module] = [nn.Sequential(*prep)]
    in_channels = width
    for stage_index, out_channels in enumerate(stage_widths(width)):
        first_stride = 1 if stage_index == 0 else 2
        layers.append(PreActBlock(in_channels, out_channels, first_stride, options))
        layers.append(PreActBlock(out_channels, out_channels, 1, options))
        in_channels = out_channels
    layers.append(ConcatPoolHead(in_channels, num_classes))
    if config.logit_scale != 1.0:
        layers.append(Scale(config.logit_scale))
    return nn.Sequential(*layers)


def conv_bn(
    in_channels: int, out_channels: int, options: Options, pool: str | None = None
) -> nn.Sequential:
    """conv-BN-act; with `pool`, a 2x2 max-pool after the activation (act_then_pool) or
    straight after the convolution (pool_then_bn). Max-pool commutes with a monotonic
    activation, so the two orders compute the same function up to BatchNorm's statistics."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    bn_act = [options.norm(out_channels), options.act()]
    if pool is None:
        return nn.Sequential(conv, *bn_act)
    if pool == "pool_then_bn":
        return nn.Sequential(conv, nn.MaxPool2d(2), *bn_act)
    return nn.Sequential(conv, *bn_act, nn.MaxPool2d(2))


class Residual(nn.Module):
    """x + conv_bn(conv_bn(x)): identity shortcut, no activation after the add."""

    def __init__(self, channels: int, options: Options) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(channels, channels, options), conv_bn(channels, channels, options)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_resnet9(
    config: Config, whitening: torch.Tensor | None = None, num_classes: int = 10
) -> nn.Sequential:
    """Page's ResNet-9 (Part 4); `width` 64 gives prep 64, layers 128, 256, 512."""
    options, width, pool = Options(config), config.width, config.pool_order
    prep = (
        nn.Sequential(*whitening_stem(width, whitening), options.norm(width), options.act())
        if config.whitening
        else conv_bn(3, width, options)
    )
    return nn.Sequential(
        prep,
        conv_bn(width, 2 * width, options, pool),
        Residual(2 * width, options),
        conv_bn(2 * width, 4 * width, options, pool),
        conv_bn(4 * width, 8 * width, options, pool),
        Residual(8 * width, options),
        nn.AdaptiveMaxPool2d(1),  # MaxPool2d(4) on the 4x4 map of a 32x32 image
        nn.Flatten(),
        nn.Linear(8 * width, num_classes, bias=False),
        Scale(config.logit_scale),
    )


def airbench_group(in_channels: int, out_channels: int, options: Options) -> nn.Sequential:
    """conv 3x3 -> max-pool 2 -> BN -> act -> conv 3x3 -> BN -> act (airbench's ConvGroup):
    the ResNet-9's pooled `conv_bn` in its `pool_then_bn` order, then a plain one."""
    return nn.Sequential(
        conv_bn(in_channels, out_channels, options, "pool_then_bn"),
        conv_bn(out_channels, out_channels, options),
    )


PATCH_WHITENING_SIZE = 2  # airbench's stem: 2x2 patches
AIRBENCH_STEM = 2 * 3 * PATCH_WHITENING_SIZE**2  # 24: 12 patch eigenvectors and their negations


def build_airbench(
    config: Config, whitening: torch.Tensor | None = None, num_classes: int = 10
) -> nn.Sequential:
    """airbench94's network (`main0_network`); `width` 64 gives groups of 64, 256, 256. On a
    32x32 image the map is 31 after the stem, then 15, 7 and 3, and the last max-pool takes
    all of it."""
    options, width = Options(config), config.width
    return nn.Sequential(
        airbench_stem(config, whitening, options),
        airbench_group(AIRBENCH_STEM, width, options),
        airbench_group(width, 4 * width, options),
        airbench_group(4 * width, 4 * width, options),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes, bias=False),
        Scale(config.logit_scale),
    )


def airbench_stem(
    config: Config, whitening: torch.Tensor | None, options: Options
) -> nn.Sequential:
    """The 2x2 stem, 3 -> 24, no padding: conv-BN-act (`main0_network`), or with
    `patch_whitening` the frozen whitening filters with a trainable bias, then act
    (`main1_whiten`). Without `whitening` (counting) the filters are zeros of their shape."""
    if not config.patch_whitening:
        conv = nn.Conv2d(3, AIRBENCH_STEM, PATCH_WHITENING_SIZE, padding=0, bias=False)
        return nn.Sequential(conv, options.norm(AIRBENCH_STEM), options.act())
    conv = nn.Conv2d(3, AIRBENCH_STEM, PATCH_WHITENING_SIZE, padding=0, bias=True)
    with torch.no_grad():
        conv.weight.copy_(whitening if whitening is not None else torch.zeros_like(conv.weight))
        conv.bias.zero_()  # the source's Conv zeroes every bias
    conv.weight.requires_grad_(False)
    return nn.Sequential(conv, options.act())


def whitening_bias(model: nn.Module, config: Config) -> nn.Parameter | None:
    """The patch-whitened stem's trainable bias (airbench with `patch_whitening`), else None."""
    if not config.patch_whitening:  # the config allows it on airbench only
        return None
    return model[0][0].bias  # type: ignore[index, return-value]


def dirac_first_filters(model: nn.Module) -> None:
    """airbench's `main2_dirac`: in every trainable 3x3 conv, the first in_channels filters
    become the identity (so the conv starts by passing its input through), the rest keep their
    default initialisation. `dirac_` on the whole weight would zero those others."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            if module.weight.requires_grad and module.out_channels >= module.in_channels:
                with torch.no_grad():
                    nn.init.dirac_(module.weight[: module.in_channels])


BUILDERS: dict[str, Callable[..., nn.Sequential]] = {
    "resnet18": build_resnet18,
    "resnet9": build_resnet9,
    "airbench": build_airbench,
}


def build_network(config: Config, whitening: torch.Tensor | None = None) -> nn.Sequential:
    """The network `config.architecture` names, with its options; PyTorch's default init (and
    the identity filters of `dirac_init`)."""
    model = BUILDERS[config.architecture](config, whitening)
    if config.dirac_init:
        dirac_first_filters(model)
    if config.head_init_std is not None:
        rescale_head(model, config.head_init_std)
    return model


def rescale_head(model: nn.Module, std: float) -> None:
    """The classifier's weights rescaled to standard deviation `std` (airbench94_muon's
    `w *= 1 / w.std()`: its head starts with unit-scale weights and a logit scale of 1/256)."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(std / head.weight.std())


def network_fields(config: Config) -> Config:
    """The config with every field that does not shape the network reset: two configs with
    the same network fields build the same network (a cache key for counting). `drop_last`
    is set only so that a ghost-BatchNorm network passes the config's batch check."""
    keep = (
        "architecture",
        "width",
        "prep_bn",
        "pool_order",
        "activation",
        "celu_alpha",
        "logit_scale",
        "bn_splits",
        "bn_scale_frozen",
        "whitening",
        "patch_whitening",
    )
    return Config(**{name: getattr(config, name) for name in keep}, drop_last=True)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's affine weights included, running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_image(config: Config, image_size: int = 32) -> int:
    """Forward+backward FLOPs for one image, counted by `torch.utils.flop_counter`.

    The counter sees convolutions and matmuls, not BatchNorm or activations; that is the
    convention behind the article's ~2.8e9 and the 2,756,474,880 of docs/article.md.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = build_network(config)
    # BatchNorm in train mode needs more than one value per channel, ghost BN a whole number
    # of groups: count a batch of that size and divide.
    batch = max(2, config.bn_splits)
    images = torch.zeros(batch, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    return counter.get_total_flops() // batch


def forward_flops_per_image(config: Config, image_size: int = 32) -> int:
    """Forward-only FLOPs for one image (an evaluation view), counted as `flops_per_image`."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_network(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops()
