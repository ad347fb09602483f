"""torch.compile (cifar10-zoo `main8_compile` = airbench94_compiled.py): 3.9 s -> 3.5 s on an
A100 (the paper, arXiv 2404.00498: 3.29 s).

The network is compiled with mode "max-autotune": fused kernels and autotuned convolutions.
The source compiles two graphs, the whitening bias trainable and frozen, switched at epoch 3,
and runs a warm-up first so compilation stays out of the timed runs. The lab compiles in its
warm-up (both graphs when the bias freezes), outside the timed region, and records the
seconds it took (`compile_s`). Same 9.9 epochs.

What changes: `compile` none -> max-autotune.

Why it should save time: on a GPU, fewer and faster kernels per step. On a CPU the lab does not
compile (inductor's CPU code is a different program, and its compile time would dwarf a small
run), so this step changes no work there: it runs anyway, and the report marks it "no effect
expected on this device" beside whatever the timing says. Only a GPU can judge it.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="torch_compile",
    title="torch.compile (max-autotune), two graphs, compiled in the warm-up (main8_compile)",
    changes="compile: none -> max-autotune (CUDA only)",
    expects={"epochs": "same", "train_steps": "same", "flops_per_image": "same"},
    needs_device="cuda",
)
def apply(config: Config) -> Config:
    return dataclasses.replace(config, compile="max-autotune")
