"""Named presets: the article's scale, a CPU scale chosen by measurement, and a smoke scale.

The `cpu` preset was chosen by measurement on a 2-core machine (see docs/presets.md): width 16
is the narrowest width where compute, not Python overhead, dominates a step; 9 rounds give a
5% saving 80% power on a machine of the noise the statistics are calibrated for
(tests/test_stats.py); the subset and epochs make `python -m lab.ablate --all` (control and
profiled passes included) finish within about 10 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError
from lab.recipe.config import ARTICLE_EPOCHS, DAWNBENCH_LR_KNOTS, Config
from lab.recipe.schedule import PiecewiseLinear
from lab.recipe.workload import FULL_TRAIN_SIZE

CPU_AIRBENCH_IMAGES = 5120  # training images of `cpu-airbench` (a tenth of CIFAR-10, x 1.024)


@dataclass(frozen=True)
class Preset:
    name: str
    config: Config
    rounds: int  # default rounds; each runs every variant once (`--rounds` overrides)


def _scaled(epochs: float, **fields: object) -> Config:
    """A config whose DAWNBench schedule is stretched to `epochs` in proportion; the steps'
    epoch counts scale the same way (`epoch_scale`), and so do the horizons counted in
    updates (`horizons`: lab/recipe/horizons.py)."""
    knots = PiecewiseLinear(DAWNBENCH_LR_KNOTS).scaled_to(epochs).knots
    return Config(
        horizons="scaled",
        epochs=epochs,
        epoch_scale=epochs / ARTICLE_EPOCHS,
        lr_knots=knots,
        **fields,  # type: ignore[arg-type]
    )


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "dawnbench",
            Config(),
            rounds=5,
        ),
        Preset(
            "cpu",
            _scaled(1, width=16, train_images=1000, test_images=500, target_accuracy=0.12),
            rounds=9,
        ),
        Preset(
            "cpu-series",
            _scaled(1, width=8, train_images=4000, test_images=500, target_accuracy=0.2),
            rounds=5,
        ),
        # A 2-core CPU scale where the late recipes act: 1/4 of the article's epochs, so the
        # final variant takes 50 optimiser steps (docs/presets.md).
        Preset(
            "cpu-series-long",
            _scaled(8.75, width=8, train_images=10_240, test_images=500, target_accuracy=0.2),
            rounds=3,
        ),
        # Chapter 2 at a 2-core CPU scale (docs/presets.md, "Chapter 2 at a CPU scale"):
        # 5,120 training images with every source batch cut by the same factor, so each
        # epoch keeps its source's 48 steps (24 for Muon's batch 2000) and per-example rate;
        # half the source's epochs; width 24, the narrowest at which dirac is an identity.
        Preset(
            "cpu-airbench",
            _scaled(
                ARTICLE_EPOCHS * 0.5,
                width=24,
                train_images=CPU_AIRBENCH_IMAGES,
                test_images=500,
                batch_scale=CPU_AIRBENCH_IMAGES / FULL_TRAIN_SIZE,
                target_accuracy=0.2,
            ),
            rounds=3,
        ),
        Preset(
            "smoke",
            _scaled(
                2,
                width=4,
                train_images=500,
                test_images=200,
                batch_scale=500 / FULL_TRAIN_SIZE,  # chapter 2's batches: its steps per epoch
                target_accuracy=0.2,
                train_workers=2,
                test_workers=2,
            ),
            rounds=1,
        ),
    )
}


def default_preset(device: str, series: str | None) -> str:
    """The sources' scale on a GPU (both chapters' full scale: 50,000 images, their epochs);
    on a CPU, the scale measured to fit the job."""
    if device == "cuda":
        return "dawnbench"
    if series in ("airbench", "both"):
        return "cpu-airbench"
    return "cpu-series" if series == "full" else "cpu"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise LabError(f"--preset {name}: unknown preset; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]
