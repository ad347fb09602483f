"""Remove the duplicated BN-ReLU after the prep convolution.

The article: the DAWNBench network applies BatchNorm-ReLU after the prep convolution and block 1
applies its own BN-ReLU straight away, so two normalisations run back to back on the largest
feature map of the network (64 x 32 x 32 per image). Removing the prep's BN-ReLU was half of the
article's first step (the other half removed the LR kink: `smooth_lr`), which the article
reports also helped accuracy.

What changes: `prep_bn=False`; the prep becomes a bare convolution. 128 parameters fewer at width
64 (the BatchNorm's scale and shift). The FLOP counter is unchanged because it counts only
convolutions and matmuls; the saving is memory-bound elementwise work (BatchNorm forward and
backward, ReLU) on the widest activations, which a FLOP count does not see.

Why it should save time: fewer elementwise kernels over 64 x 32 x 32 activations per image,
forward and backward; on a GPU those are bandwidth-bound and add up to ~10% of the step.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="bn_dedupe",
    title="Remove the duplicated BN-ReLU after the prep conv",
    changes="prep_bn: true -> false",
    expects={"params": "down", "images_per_s": "up"},
)
def apply(config: Config) -> Config:
    return dataclasses.replace(config, prep_bn=False)
