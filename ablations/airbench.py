"""Re-base onto airbench's network and recipe (chapter 2's start; cifar10-zoo `main0_network`).

This is a re-base, not one speedup: Keller Jordan's airbench descends from Page's final recipe
through hlb-CIFAR10 (tysam-code), and its ablation chain starts from a network and recipe that
differ from Page's in almost every field. The zoo re-timed Page's final recipe on an A100:
14.9 s (1.14 PFLOPs, 10 epochs); `main0_network` takes 14.2 s (1.22 PFLOPs, 34 epochs,
94.00% mean over 50 runs). The chain's later steps are each one change of this recipe.

What changes (everything below is main0's):
- network: airbench: a 2x2 stem conv 3 -> 24 without padding or bias, BatchNorm, GELU; three
  groups conv3x3-maxpool2-BN-GELU-conv3x3-BN-GELU of width, 4 width, 4 width (64/256/256),
  no residual branch; max-pool 3; a bias-free linear layer; logits x 1/9. BatchNorm eps
  1e-12, scales frozen at 1, running-statistics momentum 0.1. 1,971,640 trainable parameters
  at width 64 (the README's figure; docs/series.md).
- recipe: batch 1024, the last partial batch dropped; Nesterov SGD momentum 0.85 (torch's
  update); lr 10.0 and weight decay 0.0153 per 1024 examples, decoupled (lab.recipe.decoupled:
  a mean-loss rate of 1.304 at batch 1024 and a weight decay of 0.00153); one parameter group
  (no bias scale yet); label smoothing 0.2; 34 epochs on a triangular per-step schedule from
  0.2x the peak, peak at 20% of the steps, 0 at the end. The zoo's table says 34 epochs; the
  SPEC notes the script's own hyp as 45.0, but the script at the indexed commit (1a8b762) says
  34.0: the lab takes 34 (docs/series.md).
- data: airbench's path (`data_path=airbench`): the set on the device, every image its own
  random crop of translate 2 (reflect padding) and its own random flip, no cutout.
- evaluation: flip TTA (chapter 1's); fp16 network with fp32 BatchNorm and channels_last
  weights and inputs on a GPU (a CPU trains fp32 in NCHW).

Why it should save time: a network of 708 MFLOPs per trained image (Page's ResNet-9: 2.3
GFLOPs) with no residual adds, but 3.4x the epochs: on the source's A100 the two nearly cancel
(-0.7 s). On a CPU the FLOPs dominate, so it saves more here than there.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.decoupled import decoupled_rate, with_source_run
from lab.recipe.registry import register_step

MOMENTUM = 0.85
LR, WEIGHT_DECAY = 10.0, 0.0153  # per 1024 examples, decoupled
BATCH = 1024


@register_step(
    name="airbench",
    title="Re-base onto airbench's network and recipe (main0_network)",
    changes="architecture: resnet9 -> airbench; activation -> gelu; logit_scale -> 1/9; "
    "bn_eps -> 1e-12; bn_splits -> 1; whitening -> false (whitening_eps 5e-4, "
    "whitening_images 5000 for the next step); batch_size -> 1024 (source_batch_size), "
    "test_batch_size 2000; momentum 0.9 -> 0.85, sgd_update -> torch; decoupled lr 10 and "
    "weight_decay 0.0153; bias_lr_scale, bias_wd_scale -> 1; ema_rho -> 0; epochs -> 34, "
    "lr_knots triangular; data_path -> airbench (per-image 2-pixel crops and flips); "
    "channels_last (CUDA)",
    expects={"flops_per_image": "down", "params": "down", "epochs": "up"},
)
def apply(config: Config) -> Config:
    config = dataclasses.replace(
        config,
        architecture="airbench",
        activation="gelu",
        logit_scale=1 / 9,
        bn_splits=1,
        bn_scale_frozen=True,
        bn_momentum=0.1,
        bn_eps=1e-12,
        bn_precision="fp32",
        whitening=False,
        whitening_images=5000,
        whitening_eps=5e-4,
        momentum=MOMENTUM,
        nesterov=True,
        sgd_update="torch",
        weight_decay=WEIGHT_DECAY / LR,
        bias_lr_scale=1.0,
        bias_wd_scale=1.0,
        bias_params="named",
        label_smoothing=0.2,
        ema_rho=0.0,
        tta="flip",
        data_path="airbench",
        translate=2,
        flip_mode="random",
        cutout=0,
        drop_last=True,
        test_batch_size=2000,
        channels_last=True,
    )
    peak = decoupled_rate(LR, BATCH, MOMENTUM)
    return with_source_run(
        config, batch=BATCH, epochs=34, peak=peak, warmup=0.2, start=0.2, end=0.0
    )
