"""The benchmark's reference (lab/train/reference.py) is the lab's Part-8 recipe computed
without the lab: on copied weights and the same batches it gives the same logits, loss,
update, weight average and accuracy, bit for bit, so `python -m lab.bench` times the same work
on both sides. It imports nothing of the lab. Timing itself is a benchmark, not a test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import ablations  # noqa: F401 - registers the steps
from lab.bench import final_config, recipe_of
from lab.train.data import subset
from lab.train.reference import Reference
from lab.train.trainer import Trainer, no_phase
from tests.conftest import assert_one_line_error, call_cli

REFERENCE = Path(__file__).parents[1] / "lab" / "train" / "reference.py"


def test_the_reference_imports_nothing_of_the_lab() -> None:
    tree = ast.parse(REFERENCE.read_text())
    modules = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in modules if m.split(".")[0] in {"lab", "ablations"}], modules


@pytest.fixture(scope="module")
def pair(real_cifar):
    torch.manual_seed(0)
    config = final_config("cpu-series", 8)
    data = subset(real_cifar, 1024, 256, 0)
    trainer = Trainer(config, data, torch.device("cpu"), 0)
    weights = list(trainer.model.state_dict().values())
    reference = Reference(weights, recipe_of(config, trainer.ema_rho, trainer.bn_momentum))
    return trainer, reference


def _floating(tensors):
    return [t for t in tensors if t.is_floating_point()]


def test_the_reference_computes_what_the_lab_computes(pair) -> None:
    trainer, reference = pair
    pipeline = trainer.pipeline
    images = pipeline.train[:512, :, 4:36, 4:36].contiguous()
    labels = pipeline.train_labels[:512]
    trainer.model.train()
    with torch.no_grad():
        assert torch.equal(trainer.model(images), reference.live(images))
    for index in range(3):  # step 0 updates the weight average (ema_every divides 0)
        trainer._set_lr(0, index)
        rate = reference.rate((index + 1) / pipeline.steps_per_epoch)
        inputs = trainer.placement.inputs(images, labels)
        lab_loss = trainer._step(*inputs, index, no_phase, trainer._ledger())
        assert torch.equal(lab_loss, reference.step(images, labels, rate, index))
        lab_state = _floating(trainer.model.state_dict().values())
        assert all(map(torch.equal, lab_state, _floating(reference.live.state)))
        averaged = _floating(trainer.ema.model.state_dict().values())
        assert all(map(torch.equal, averaged, _floating(reference.average.state)))
    accuracy = reference.evaluate(pipeline.test, pipeline.test_labels, 512)
    assert trainer.evaluate().accuracy == accuracy


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--widths", "eight"], "--widths"),
        (["--pairs", "2"], "--pairs"),
        (["--block", "0"], "--block"),
        (["--measure", "step,speed"], "--measure"),
    ],
)
def test_bad_flags_get_one_line(args, fragment) -> None:
    assert_one_line_error(call_cli(*args, module="lab.bench"), fragment)


def test_a_preset_without_one_batch_gets_one_line(real_data_path) -> None:
    assert_one_line_error(call_cli("--preset", "smoke", module="lab.bench"), "--preset")
