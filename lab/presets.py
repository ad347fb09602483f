"""Named presets: the article's scale, a CPU scale chosen by measurement, and a smoke scale.

The `cpu` preset was chosen by timing on a 2-core machine (see docs/presets.md): width 16 is
the narrowest width where compute, not Python overhead, dominates a step, and the subset and
epochs make `python -m lab.ablate --all` finish within 10 minutes with repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import DAWNBENCH_LR_KNOTS, Config
from lab.errors import LabError
from lab.schedule import PiecewiseLinear


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: Config
    runs: int  # default timed runs per variant (`--runs` overrides)


def _scaled(epochs: int, **fields: object) -> Config:
    """A config whose DAWNBench schedule is stretched to `epochs` in proportion."""
    knots = PiecewiseLinear(DAWNBENCH_LR_KNOTS).scaled_to(epochs).knots
    return Config(epochs=epochs, lr_knots=knots, **fields)  # type: ignore[arg-type]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "dawnbench",
            "the article's scale: width 64, 50,000/10,000 images, 35 epochs, target 94% (a GPU)",
            Config(),
            runs=5,
        ),
        Preset(
            "cpu",
            "a 2-core CPU scale: width 16, 4,000/1,000 images, 2 epochs",
            _scaled(2, width=16, train_images=4000, test_images=1000, target_accuracy=0.35),
            runs=3,
        ),
        Preset(
            "smoke",
            "seconds, for tests: width 4, 500/200 images, 2 epochs",
            _scaled(
                2,
                width=4,
                train_images=500,
                test_images=200,
                target_accuracy=0.2,
                train_workers=2,
                test_workers=2,
            ),
            runs=1,
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise LabError(f"--preset {name}: unknown preset; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]
