"""Keep BatchNorm in fp32 inside the fp16 model.

The article (Part 3; `experiments.ipynb` cell 15): profiling showed BatchNorm taking a large
share of the time. PyTorch 0.4's `.half()` converted BatchNorm's weights and statistics to fp16
too, which "triggers a slow code path"; leaving BatchNorm's parameters in fp32 (inputs and
outputs stay fp16) selects cuDNN's fast kernels. No hyperparameter changes.

What changes: `bn_precision` model -> fp32: after the model is made fp16, every BatchNorm
module is converted back to fp32.

Why it should save time: on a GPU in fp16, the fast fused BatchNorm instead of the slow one.
On a CPU the lab trains in fp32 throughout, so this step changes no work: it is run anyway, and
the report marks it "no effect expected on this device" beside whatever the timing says.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="fp32_batchnorm",
    title="BatchNorm parameters in fp32 inside the fp16 model",
    changes="bn_precision: model -> fp32",
    expects={"params": "same", "train_steps": "same", "flops_per_image": "same"},
    needs_precision="fp16",
)
def apply(config: Config) -> Config:
    return dataclasses.replace(config, bn_precision="fp32")
