"""Batch 768, the learning rate per example unchanged.

The article (Part 3; `experiments.ipynb` cell 19): with cutout's regularisation, an even larger
batch still trains well. The peak learning rate grows with the batch, 0.6 / 768 = 0.4 / 512 per
example.

What changes: `batch_size` 512 -> 768; knots (0,0),(8,0.6),(30,0). Weight decay is the same
in the lab's mean-loss form (the source multiplied it by the batch size).

Why it should save time: a third fewer optimiser steps again, so less per-step overhead. The
saving is smaller than batch 512's because most overhead is already gone.
"""

import dataclasses

from lab.recipe.config import Config, with_article_epochs
from lab.recipe.registry import register_step


@register_step(
    name="batch_768",
    title="Batch 768, peak learning rate 0.6",
    changes="batch_size: 512 -> 768; lr_knots: peak 0.6 at 8 of 30",
    expects={"train_steps": "down", "epochs": "same"},
)
def apply(config: Config) -> Config:
    config = dataclasses.replace(config, batch_size=768)
    return with_article_epochs(config, 30, ((0, 0), (8, 0.6), (30, 0)))
