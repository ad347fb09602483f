"""TensorBoard scalars and images beside the profiler traces, all under <out>/tb/.

Per variant (the same run folder as its trace): train loss, test accuracy, epoch time and
images/s by epoch, each the median over the variant's timed runs. In `tb/waterfall/`: the
waterfall chart as an image; in `tb/breakdown/` the breakdown chart (phases or profiles). Rewritten
from the records by every report build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lab.analysis.stats import median
from lab.records.outputs import BREAKDOWN, TENSORBOARD, WATERFALL, tb_run_name
from lab.records.summary import Summary

SCALARS = {
    "train_loss": lambda e: e["train_loss"],
    "test_accuracy": lambda e: e["test_accuracy"],
    "epoch_s": lambda e: e["train_s"] + e["eval_s"],
    "images_per_s": lambda e: e["images_per_s"],
}


def _fresh_writer(folder: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()  # a rebuilt report replaces its scalars instead of duplicating them
    return SummaryWriter(log_dir=str(folder))


def write_tensorboard_logs(out: Path, summary: Summary, records: list[dict]) -> None:
    timed = [r for r in records if not r["warmup"]]
    for index, variant in enumerate(summary.variants):
        runs = [r["measurements"]["epochs"] for r in timed if r["variant"] == variant.name]
        writer = _fresh_writer(out / TENSORBOARD / tb_run_name(index, variant.name))
        for epoch_index in range(min(len(epochs) for epochs in runs)):
            for tag, read in SCALARS.items():
                value = median([read(epochs[epoch_index]) for epochs in runs])
                writer.add_scalar(tag, value, global_step=epoch_index + 1)
        writer.close()
    _log_chart(out, WATERFALL)
    if (out / f"{BREAKDOWN}.png").exists():
        _log_chart(out, BREAKDOWN)
    else:
        for old in (out / TENSORBOARD / BREAKDOWN).glob("events.out.tfevents.*"):
            old.unlink()  # no profiles any more: no stale chart either


def _log_chart(out: Path, stem: str) -> None:
    """The chart `<stem>.png` as an image tagged `stem`, in its own run `tb/<stem>/`."""
    import matplotlib.image

    picture = matplotlib.image.imread(out / f"{stem}.png")[:, :, :3]
    writer = _fresh_writer(out / TENSORBOARD / stem)
    writer.add_image(stem, (picture * 255).astype(np.uint8), dataformats="HWC")
    writer.close()
