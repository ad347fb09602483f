"""The DAWNBench ResNet-18 (Ben Johnson's `bkj/basenet` CIFAR-10 entry), as SPEC.md describes it.

The network is a pre-activation ResNet-18 whose last stage is 256 wide, with a concatenated
average+max pooling head. One quirk of the original matters for the ablations: the prep
convolution is followed by BN-ReLU, and block 1 immediately applies its own BN-ReLU again
("the duplicated BN-ReLU"). `prep_bn=False` removes the prep's BN-ReLU (the article's step 1).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PreActBlock(nn.Module):
    """`a = relu(bn1(x))`; conv3x3(a) -> relu(bn2) -> conv3x3, plus a (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        needs_projection = stride != 1 or in_channels != out_channels
        # The original projects from the *activated* input `a`, not from `x`.
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if needs_projection
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        shortcut = self.shortcut(a) if self.shortcut is not None else x
        out = self.conv1(a)
        out = self.conv2(F.relu(self.bn2(out)))
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
    """Output channels of the four stages: (w, 2w, 4w, 4w); width 64 gives 64, 128, 256, 256."""
    return (width, 2 * width, 4 * width, 4 * width)


def build_resnet18(width: int = 64, prep_bn: bool = True, num_classes: int = 10) -> nn.Sequential:
    """Build the DAWNBench ResNet-18 with PyTorch's default initialisation.

    `width` scales every layer (64 is the original); `prep_bn` keeps the duplicated BN-ReLU.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    prep: list[nn.Module] = [nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)]
    if prep_bn:
        prep += [nn.BatchNorm2d(width), nn.ReLU()]
    layers: list[nn.Module] = [nn.Sequential(*prep)]
    in_channels = width
    for stage_index, out_channels in enumerate(stage_widths(width)):
        first_stride = 1 if stage_index == 0 else 2
        layers.append(PreActBlock(in_channels, out_channels, first_stride))
        layers.append(PreActBlock(out_channels, out_channels, 1))
        in_channels = out_channels
    layers.append(ConcatPoolHead(in_channels, num_classes))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's affine weights included, running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_image(width: int, prep_bn: bool, image_size: int = 32) -> int:
    """Forward+backward FLOPs for one image, counted by `torch.utils.flop_counter`.

    The counter sees convolutions and matmuls, not BatchNorm or ReLU; that is the convention
    behind the article's ~2.8e9 and SPEC.md's 2,756,474,880 at width 64.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = build_resnet18(width, prep_bn)
    batch = 2  # BatchNorm in train mode needs more than one value per channel; divide after.
    images = torch.zeros(batch, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    return counter.get_total_flops() // batch
