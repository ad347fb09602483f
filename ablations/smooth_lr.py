"""Remove the kink from the learning-rate schedule.

The article: the DAWNBench schedule rises linearly to 0.1 at epoch 15, jumps to 0.105, then falls.
The article removed the jump together with the duplicated BN-ReLU (its first step) and says the
schedule change should not change the time: the same number of steps runs either way.

What changes: the knot after every jump is dropped, so (0,0),(15,0.1),(15,0.105),(30,0.005),(35,0)
becomes (0,0),(15,0.1),(30,0.005),(35,0) (scaled in proportion on shorter presets).

Why it is measured anyway: the lab times it rather than assuming it is free; no counter should
move, so any saving reported here is noise and should read "not significant".
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="smooth_lr",
    title="Remove the kink in the learning-rate schedule",
    changes="lr_knots: drop the jump at 15/35 of training",
    expects={"worker_launches": "same", "rng_calls": "same"},
)
def apply(config: Config) -> Config:
    return dataclasses.replace(config, lr_knots=config.schedule.without_jumps().knots)
