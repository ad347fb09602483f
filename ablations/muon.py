"""Muon for the filters, batch 2000, 8 epochs (airbench94_muon.py): 3.5 s -> 2.59 s on a 400 W
A100 with torch 2.4.1, 94.01% mean over 200 runs (0.29 PFLOPs).

The conv filters are trained by Muon: Nesterov momentum 0.6 on the raw gradient, each update
orthogonalised by 3 quintic Newton-Schulz iterations in bf16 (singular values pushed to about
[0.5, 1.5]), each filter bank renormalised to norm sqrt(out_channels) before the step, step
0.24, no weight decay. Everything else (the BatchNorm and whitening biases at lr 0.053, the
classifier at 0.67, both per summed example, decoupled weight decay 2e-6 x batch) by Nesterov
SGD at momentum 0.85. Batch 2000 (25 steps an epoch, nothing dropped), 8 epochs, every rate
decaying linearly from its peak to 0 with no warm-up, no Lookahead. The whitening bias's rate
decays to 0 over its 3 epochs, then it is frozen. The classifier starts with unit-std weights
and its logits are divided by its 256 inputs (4 x width).

What changes: `optimizer` sgd -> muon (`muon_lr` 0.24, `muon_momentum` 0.6, 3 Newton-Schulz
steps); batch 1024 -> 2000; epochs 9.9 -> 8, schedule (0, 1), (8, 0) of the peak; SGD: the
head's mean-loss rate 0.67 x 2000 and the biases' 0.053/0.67 of it, weight decay 0.004 per
step, Nesterov 0.85; `whitening_bias_decay` true; `lookahead_every` 5 -> 0; `head_init_std` 1;
`logit_scale` 1/9 -> 1/(4 x width); `bn_momentum` 0.4 (unchanged).

Why it should save time: 8/9.9 of the epochs at a larger batch (fewer, larger steps), for a
Newton-Schulz iteration per filter bank per step: cheap on a GPU's tensor cores in bf16, a
larger share of a CPU's step.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.decoupled import with_source_run
from lab.recipe.registry import register_step

BATCH = 2000
HEAD_LR, BIAS_LR = 0.67, 0.053  # per summed example, at batch 2000
DECAY_PER_STEP = 2e-6 * BATCH  # the source's wd: lr x weight_decay = this, every group


@register_step(
    name="muon",
    title="Muon for the filters, batch 2000, 8 epochs, no Lookahead (airbench94_muon)",
    changes="optimizer: sgd -> muon (lr 0.24, Nesterov 0.6, 3 bf16 Newton-Schulz steps) for "
    "the filters, SGD for the rest: weight_decay, bias_lr_scale, bias_wd_scale, bias_params -> "
    "named, whitening_bias_decay; batch_size 1024 -> 2000 (source_batch_size); epochs 9.9 -> "
    "8, lr_knots linear to 0; lookahead_every 5 -> 0; head_init_std 1; logit_scale 1/(its "
    "4x-wide input)",
    expects={"weight_average_updates": "down", "epochs": "down", "train_steps": "down"},
)
def apply(config: Config) -> Config:
    head_rate = HEAD_LR * BATCH  # the lab's rates are those of a mean loss
    config = dataclasses.replace(
        config,
        optimizer="muon",
        muon_lr=0.24,
        muon_momentum=0.6,
        muon_ns_steps=3,
        momentum=0.85,
        weight_decay=DECAY_PER_STEP / head_rate,
        bias_params="named",
        bias_lr_scale=BIAS_LR / HEAD_LR,
        bias_wd_scale=HEAD_LR / BIAS_LR,
        whitening_bias_decay=True,
        lookahead_every=0,
        head_init_std=1.0,
        logit_scale=1 / (4 * config.width),
        drop_last=True,
    )
    config = with_source_run(
        config, batch=BATCH, epochs=8, peak=head_rate, warmup=0.0, start=1.0, end=0.0
    )
    return config
