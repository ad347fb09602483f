import pytest
import torch

import ablations  # noqa: F401 - registers the steps
from lab.errors import LabError
from lab.recipe.config import Config, apply_overrides
from lab.recipe.presets import PRESETS
from lab.recipe.registry import series_steps
from lab.recipe.variant import apply_steps
from lab.train.data import subset
from lab.train.trainer import Trainer


def test_typed_overrides():
    config = apply_overrides(
        Config(),
        [
            "width=8",
            "prep_bn=false",
            "weight_decay=1e-3",
            "train_images=none",
            "preprocessing=cached",
        ],
    )
    assert (config.width, config.prep_bn, config.weight_decay) == (8, False, 1e-3)
    assert config.train_images is None and config.preprocessing == "cached"


def test_epochs_override_stretches_the_schedule():
    config = apply_overrides(Config(), ["epochs=7"])
    assert [k[0] for k in config.lr_knots] == pytest.approx([0, 3, 3, 6, 7])


def test_knots_override_parses_json():
    config = apply_overrides(Config(), ["lr_knots=[[0, 0], [1, 0.2], [2, 0]]"])
    assert config.lr_knots == ((0, 0), (1, 0.2), (2, 0))


def test_unknown_key_lists_valid_keys():
    with pytest.raises(LabError, match="unknown key; valid keys: .*width"):
        apply_overrides(Config(), ["widht=8"])


@pytest.mark.parametrize(
    "assignment",
    [
        "width=wide",
        "prep_bn=maybe",
        "width",
        "epochs=0",
        "preprocessing=gpu",
        "lr_knots=[[3,0],[1,1]]",
        "lr_scale=0",
    ],
)
def test_bad_values_are_one_line_errors(assignment):
    with pytest.raises(LabError) as error:
        apply_overrides(Config(), [assignment])
    assert "\n" not in str(error.value)


def test_config_round_trips_through_json_dict():
    config = PRESETS["cpu"].config
    assert Config.from_dict(config.to_dict()) == config


def test_scaled_presets_scale_the_schedule():
    cpu = PRESETS["cpu"].config
    assert cpu.lr_knots[-1][0] == cpu.epochs
    assert cpu.lr_knots[1][0] == pytest.approx(15 / 35 * cpu.epochs)


def test_lr_scale_scales_the_run_rates_not_the_written_knots():
    """The knots stay the steps' own (a report of old records reads them as written); the run
    reads `run_schedule`. A step writes knots, never the scale, so `--set lr_scale` holds for
    every variant of the chain."""
    base = apply_overrides(PRESETS["cpu-series-long"].config, ["lr_scale=0.5"])
    config = apply_steps(base, series_steps("full"))
    assert config.lr_scale == 0.5
    written = dict(config.lr_knots)
    assert [rate for _, rate in config.run_schedule.knots] == [
        0.5 * rate for rate in written.values()
    ]
    assert Config.from_dict(config.to_dict()) == config


def test_the_trainer_steps_at_the_scaled_rates(real_cifar):
    config = apply_overrides(PRESETS["smoke"].config, ["lr_scale=0.25"])
    trainer = Trainer(config, subset(real_cifar, 500, 200, 0), torch.device("cpu"), 0)
    trainer._set_lr(1, 0)
    expected = 0.25 * config.schedule(1.0) / config.batch_size
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
