"""No worker processes: augment on the main thread.

The article: once a sample is a numpy slice with pre-drawn choices, the loader's work is so small
that shipping batches between processes costs more than doing it in place. Going to
`num_workers=0` was the article's fourth and last step.

What changes: `train_workers=0`, `test_workers=0`: no process is started, batches are built
in the training loop's own process.

Why it should save time: no process start-up per pass, no pickling of batches through shared
memory queues; on few cores, no competition between processes. The cost is that waiting for
data now happens in the main loop, which the "waiting for data" counter shows.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="main_thread_aug",
    title="Augmentation on the main thread (no worker processes)",
    changes="train_workers, test_workers: 1 -> 0",
    expects={"worker_launches": "zero", "cpu_children_s": "zero"},
)
def apply(config: Config) -> Config:
    return dataclasses.replace(config, train_workers=0, test_workers=0)
