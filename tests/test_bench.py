"""The benchmark's references are the lab's recipes computed without the lab: Part 8's
(lab/train/reference.py) on copied weights and the same batches gives the same logits, loss,
update, weight average and accuracy, bit for bit; Part 1's (lab/train/reference_part1.py) the
same steps and, from the same seeds, the same whole epoch through its own DataLoader. So
`python -m lab.bench` times the same work on both sides. Neither imports anything of the lab.
Timing itself is a benchmark, not a test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import ablations  # noqa: F401 - registers the steps
from lab.bench import final_config, part1_recipe_of, recipe_of
from lab.recipe.workload import CIFAR_MEAN, CIFAR_STD
from lab.train import reference_part1 as part1
from lab.train.data import subset
from lab.train.reference import Reference
from lab.train.trainer import Trainer, no_phase
from tests.conftest import assert_one_line_error, call_cli

TRAIN = Path(__file__).parents[1] / "lab" / "train"


@pytest.mark.parametrize("name", ["reference.py", "reference_part1.py"])
def test_the_reference_imports_nothing_of_the_lab(name) -> None:
    tree = ast.parse((TRAIN / name).read_text())
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
        rate = reference.step_rate(0, index, pipeline.steps_per_epoch)
        inputs = trainer.placement.inputs(images, labels)
        lab_loss = trainer._step(*inputs, index, no_phase, trainer._ledger())
        assert torch.equal(lab_loss, reference.step(images, labels, rate, index))
        lab_state = _floating(trainer.model.state_dict().values())
        assert all(map(torch.equal, lab_state, _floating(reference.live.state)))
        averaged = _floating(trainer.ema.model.state_dict().values())
        assert all(map(torch.equal, averaged, _floating(reference.average.state)))
    accuracy = reference.evaluate(pipeline.test, pipeline.test_labels, 512)
    assert trainer.evaluate().accuracy == accuracy


def _part1_pair(real_cifar):
    config = final_config("cpu-series", 8, "part1")
    data = subset(real_cifar, 1024, 256, 0)
    trainer = Trainer(config, data, torch.device("cpu"), 0)
    weights = list(trainer.model.state_dict().values())
    reference = part1.Part1Reference(weights, part1_recipe_of(config, trainer.bn_momentum))
    return trainer, reference, data


def test_the_part1_reference_steps_as_the_lab_steps(real_cifar) -> None:
    trainer, reference, _ = _part1_pair(real_cifar)
    padded = torch.from_numpy(trainer.pipeline.train_loader.dataset.padded)
    images = padded[:128, :, 4:36, 4:36].contiguous()
    labels = torch.from_numpy(trainer.pipeline.train_loader.dataset.labels[:128])
    trainer.model.train()
    with torch.no_grad():
        assert torch.equal(trainer.model(images), reference.net(images))
    for index in range(3):  # step 0 runs at rate 0: the later ones move the weights
        trainer._set_lr(0, index)
        rate = reference.step_rate(0, index, trainer.pipeline.steps_per_epoch)
        lab_loss = trainer._step(images, labels, index, no_phase, trainer._ledger())
        assert torch.equal(lab_loss, reference.step(images, labels, rate, index))
        lab_state = _floating(trainer.model.state_dict().values())
        assert all(map(torch.equal, lab_state, _floating(reference.net.state)))


def test_the_part1_reference_trains_an_epoch_as_the_lab(real_cifar) -> None:
    """The lab's loader shuffles with `seed`, draws its crops with `seed + 1`: from the same
    seeds the reference's own DataLoader yields the same batches, so the epochs agree."""
    trainer, reference, data = _part1_pair(real_cifar)
    config = trainer.config
    padded = part1.preprocess(data.train_images, CIFAR_MEAN, CIFAR_STD, part1.PAD)
    prepared = part1.preprocess(data.test_images, CIFAR_MEAN, CIFAR_STD, 0)
    assert (padded == trainer.pipeline.train_loader.dataset.padded).all()
    loader = part1.train_loader(padded, data.train_labels, config.batch_size, 0, 1)
    lab_pass = trainer.train_epoch(0)
    assert reference.train_epoch(loader, 0) == lab_pass.mean_loss
    lab_state = _floating(trainer.model.state_dict().values())
    assert all(map(torch.equal, lab_state, _floating(reference.net.state)))
    test = part1.evaluation_loader(prepared, data.test_labels, config.test_batch_size)
    assert reference.evaluate(test) == trainer.evaluate().accuracy


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--widths", "eight"], "--widths"),
        (["--pairs", "2"], "--pairs"),
        (["--block", "0"], "--block"),
        (["--measure", "step,speed"], "--measure"),
        (["--recipe", "part9"], "--recipe"),
    ],
)
def test_bad_flags_get_one_line(args, fragment) -> None:
    assert_one_line_error(call_cli(*args, module="lab.bench"), fragment)


def test_a_preset_without_one_batch_gets_one_line(real_data_path) -> None:
    assert_one_line_error(call_cli("--preset", "smoke", module="lab.bench"), "--preset")
