"""Batch 512: four times fewer optimiser steps, with the learning rate raised to match.

The article (Part 2; `experiments.ipynb` cell 13): with the data pipeline out of the way, a step
of 128 images leaves the GPU under-used. Batches of 512 run four times fewer, larger steps; the
peak learning rate per example is raised by 10% (0.44 / 512 = 1.1 x 0.1 / 128) and the kink-free
35-epoch schedule keeps its shape.

What changes: `batch_size` 128 -> 512; knots (0,0),(15,0.44),(30,0.005),(35,0) in the
article's epochs (scaled by `epoch_scale`). The source sums the loss and multiplies weight
decay by the batch size; with the lab's mean loss that is the same update with weight decay
5e-4 unchanged (docs/article.md, "The optimiser").

Why it should save time: per-step overheads (kernel launches, Python, the optimiser's pass over
the weights) are paid a quarter as often, and bigger matrix multiplies use the device better.
The optimiser-step counter falls by about 4x; FLOPs per image do not change.
"""

import dataclasses

from lab.recipe.config import Config, with_article_epochs
from lab.recipe.registry import register_step


@register_step(
    name="batch_512",
    title="Batch 512 with a 10% higher peak learning rate per example",
    changes="batch_size: 128 -> 512; lr_knots: peak 0.44 at 15 of 35",
    expects={"train_steps": "down", "flops_per_image": "same", "epochs": "same"},
)
def apply(config: Config) -> Config:
    config = dataclasses.replace(config, batch_size=512)
    return with_article_epochs(config, 35, ((0, 0), (15, 0.44), (30, 0.005), (35, 0)))
