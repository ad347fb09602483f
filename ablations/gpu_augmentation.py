"""The whole data set on the training device, augmented in groups once per epoch.

The article (Part 8; `bag_of_tricks.ipynb` cells 10, 18 and 28): Part 8 re-times the Part 4
network on DAWNBench's rules (preprocessing counted, evaluation not) and then moves the data to
the GPU. The training set is normalised and
padded once on the device; each epoch every transform (crop, flip, cutout) is applied to
contiguous groups of a freshly shuffled set, one random option per group, at most 200 options;
batches of 512 are slices of the result, and the last partial batch is dropped.

What changes: `data_path` loader -> device, `drop_last` true (see `lab/train/device_data.py`), and
`sgd_update` torch -> page: the Part 8 code is also where Page's own `nesterov_update` replaces
`torch.optim.SGD` (`lab/train/update.py`; it reads the schedule one step on and keeps each
gradient's rate in the velocity: within 0.1% at the article's 97 steps per epoch, ~9% further
travel at the CPU presets' few steps per epoch, docs/series.md). No
DataLoader and no worker process remain; the random draws stay a few per epoch (7 with
cutout: a permutation of the set and a shuffle of the options per transform, and a final
permutation, against 5 vectorised draws of the bulk choices).

Why it should save time: a few large tensor operations per epoch replace a Python call per
sample and a host-to-device copy per batch. On a CPU the "device" is the CPU itself: the
saving is the per-sample Python and collation work, and the dropped last batch.
"""

import dataclasses

from lab.recipe.config import Config
from lab.recipe.registry import register_step


@register_step(
    name="gpu_augmentation",
    title="Data on the device, grouped augmentation per epoch",
    changes="data_path: loader -> device; drop_last: false -> true; sgd_update: torch -> page",
    # The dropped last batch removes an optimiser step per epoch at the article's scale (98 ->
    # 97), but not always on a subset with a fractional epoch, so it is not promised here.
    expects={"worker_launches": "zero", "rng_calls": "up"},
)
def apply(config: Config) -> Config:
    return dataclasses.replace(config, data_path="device", drop_last=True, sgd_update="page")
