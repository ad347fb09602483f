"""The ResNet-9: a shallower, wider network, 24 epochs at batch 512.

The article (Part 4; `experiments.ipynb` cell 39): after trying cut-down backbones, Page builds
a 9-layer network: prep conv-BN-ReLU (64), three conv-BN-ReLU-maxpool layers (128, 256, 512)
with a two-conv residual block after the first and the last, a global max-pool and a bias-free
linear layer whose output is scaled by 0.125. It trains in 24 epochs at batch 512.

What changes: `architecture` resnet18 -> resnet9 (6,573,120 trainable parameters at width 64,
against the ResNet-18's 5,205,834), `logit_scale` 0.125, `batch_size` back to 512, `epochs` 24
article epochs, knots (0,0),(5,0.4),(24,0). Cutout 8x8 stays. BatchNorm scales start at 1
(the source's `bn_weight_init=1.0`; PyTorch's default today).

Why it should save time: fewer layers and fewer FLOPs per image (about 2.27e9 forward+backward
against 2.76e9), most of them in large 3x3 convolutions that run efficiently, and 24/30 of the
epochs.
"""

import dataclasses

from lab.recipe.config import Config, with_article_epochs
from lab.recipe.registry import register_step


@register_step(
    name="resnet9",
    title="The ResNet-9 at batch 512 for 24 epochs",
    changes="architecture: resnet18 -> resnet9; logit_scale 0.125; batch_size 512; "
    "epochs 30 -> 24; lr_knots: peak 0.4 at 5",
    expects={"flops_per_image": "down", "epochs": "down", "params": "up"},
)
def apply(config: Config) -> Config:
    config = dataclasses.replace(config, architecture="resnet9", logit_scale=0.125, batch_size=512)
    return with_article_epochs(config, 24, ((0, 0), (5, 0.4), (24, 0)))
