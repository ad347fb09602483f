"""`python -m lab.bench`: the lab's training step and timed loop against a straight-line
reference, paired, so the lab's own overhead is a measured figure: for the final variant of
each chapter (`--recipe`): Part 8's (the last `--series full` variant, against
`lab/train/reference.py`) and Part 1's (the last `--series part1` variant, its DataLoader
pipeline included, against `lab/train/reference_part1.py`).

Both sides run in one process on copied weights: the lab's `Trainer` of the recipe (every
measurement it records switched on) and the reference built from its state. Each pair runs
both on the same batch (or the same epoch's data), in a random order per pair; the figure is
the geometric mean of the per-pair time ratios lab / reference and its 95% Student-t interval
(`lab.analysis.stats.paired_ratio`), as the lab's own verdicts are. A ratio's upper end under
1.03 means the lab adds less than 3%. A third figure pairs the lab's timed loop with its phase
accounting on and off: the accounting's own cost. Results append to `--out` (JSON lines, one
per measurement) and print as a table; docs/profiling.md has the
figures of this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

import ablations  # noqa: F401 - registers the steps
from lab.analysis.stats import paired_ratio
from lab.engine.metadata import metadata
from lab.errors import LabError
from lab.recipe import registry
from lab.recipe.config import Config
from lab.recipe.presets import get_preset
from lab.recipe.variant import apply_steps
from lab.recipe.workload import CIFAR_MEAN, CIFAR_STD
from lab.train import reference_part1 as part1
from lab.train.clock import PhaseLedger
from lab.train.data import Cifar, find_or_fetch_data, load_cifar, subset
from lab.train.pipeline import LoaderPipeline
from lab.train.reference import Recipe, Reference, augmented_epoch, batches
from lab.train.trainer import Trainer, no_phase

LIMIT = 1.03  # the lab's step and loop may take at most 3% longer than the reference's
# The figures `--measure` picks from, in the order they run: each costs minutes at many pairs,
# so a long run for one figure need not pay for the others.
MEASURES = ("step", "loop", "accounting")


def final_config(preset: str, width: int, series: str = "full") -> Config:
    """The last variant of `--series SERIES` at `preset`, at `width`."""
    config = apply_steps(get_preset(preset).config, registry.series_steps(series))
    return replace(config, width=width)


def recipe_of(config: Config, ema_rho: float, bn_momentum: float) -> Recipe:
    """The reference's hyperparameters, read from the lab's config; `ema_rho` and
    `bn_momentum` are the ones the lab's run uses (`Trainer.ema_rho`, `Trainer.bn_momentum`:
    a scaled preset shortens both memories)."""
    return Recipe(
        batch_size=config.batch_size,
        splits=config.bn_splits,
        celu_alpha=config.celu_alpha,
        logit_scale=config.logit_scale,
        label_smoothing=config.label_smoothing,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        bias_lr_scale=config.bias_lr_scale,
        bias_wd_scale=config.bias_wd_scale,
        ema_rho=ema_rho,
        bn_momentum=bn_momentum,
        ema_every=config.ema_every,
        lr_knots=config.run_schedule.knots,
    )


def part1_recipe_of(config: Config, bn_momentum: float) -> part1.Part1Recipe:
    """Part 1's reference hyperparameters, read from the lab's config; `bn_momentum` is the
    one the lab's run uses (`Trainer.bn_momentum`)."""
    return part1.Part1Recipe(
        batch_size=config.batch_size,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        lr_knots=config.run_schedule.knots,
        bn_momentum=bn_momentum,
    )


# What each reference implements: the config fields (and their values) of its chapter's final
# variant. A config off these would time a recipe the reference does not compute.
PART8_FIELDS = {
    "architecture": "resnet9",
    "whitening": True,
    "pool_order": "pool_then_bn",
    "activation": "celu",
    "bn_scale_frozen": True,
    "data_path": "device",
    "sgd_update": "page",
    "tta": "flip",
    "cutout": 0,
}
PART1_FIELDS = {
    "architecture": "resnet18",
    "prep_bn": False,
    "whitening": False,
    "activation": "relu",
    "bn_splits": 1,
    "bn_scale_frozen": False,
    "logit_scale": 1.0,
    "data_path": "loader",
    "preprocessing": "cached",
    "augment_rng": "bulk",
    "train_workers": 0,
    "test_workers": 0,
    "drop_last": False,
    "cutout": 0,
    "sgd_update": "torch",
    "nesterov": True,
    "bias_lr_scale": 1.0,
    "bias_wd_scale": 1.0,
    "label_smoothing": 0.0,
    "ema_rho": 0.0,
    "tta": "none",
}


def _check_supported(config: Config, chapter: Chapter) -> None:
    wanted = chapter.fields
    wrong = [f"{k}={getattr(config, k)}" for k, v in wanted.items() if getattr(config, k) != v]
    if chapter.name == "part8" and not config.ema_rho:
        wrong.append("ema_rho=0")
    if wrong:
        raise LabError(
            f"lab.bench: the {chapter.name} reference is its chapter's final recipe; "
            f"this config has {wrong}"
        )
    if config.train_images is not None and config.train_images < config.batch_size:
        raise LabError(
            f"--preset: {config.train_images} training images hold no batch of "
            f"{config.batch_size}; choose a preset with at least one batch"
        )


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _lab_step(
    trainer: Trainer, batch: tuple[torch.Tensor, torch.Tensor], index: int, ledger: PhaseLedger
) -> None:
    """The body of the lab's training loop for one step, as `Trainer.train_epoch` runs it,
    its phase accounting included."""
    ledger.enter("other")
    trainer._set_lr(0, index)
    ledger.enter("h2d")
    images, labels = trainer.placement.inputs(*batch)
    trainer._step(images, labels, index, no_phase, ledger)
    ledger.enter("other")


def bench_steps(
    trainer: Trainer, reference: Reference, pairs: int, order: random.Random, block: int
) -> dict:
    """Per pair: `block` lab steps and `block` reference steps on the same batches at the same
    rates, the two blocks in a random order. A block, not a single step, is the unit timed:
    per-step times on shared cores scatter by ~25%, a block's by about 1/sqrt(block) of it."""
    config = trainer.config
    images, labels = _centre_crops(trainer)
    size = config.batch_size
    lab_s, reference_s = [], []
    trainer.model.train()
    for pair in range(pairs + 1):  # pair 0 warms both up and is discarded
        indices = range(pair * block, (pair + 1) * block)
        steps = []
        for index in indices:
            start = (index * size) % (len(labels) - size + 1)
            batch = images[start : start + size].contiguous(), labels[start : start + size]
            rate = reference.step_rate(0, index, trainer.pipeline.steps_per_epoch)
            steps.append((batch, rate, index))
        sides = [
            ("lab", partial(_lab_steps, trainer, steps)),
            ("reference", partial(_reference_steps, reference, steps)),
        ]
        order.shuffle(sides)
        times = {name: _timed(run) for name, run in sides}
        if pair:
            lab_s.append(times["lab"] / block)
            reference_s.append(times["reference"] / block)
    return _figure("training step", reference_s, lab_s)


def _centre_crops(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set's padded images cut to their centre 32x32, and the labels: either
    pipeline's, as the step's input (the augmentation is the loop's, not the step's)."""
    pipeline = trainer.pipeline
    if isinstance(pipeline, LoaderPipeline):
        dataset = pipeline.train_loader.dataset
        padded = torch.from_numpy(dataset.padded)  # type: ignore[attr-defined]
        labels = torch.from_numpy(dataset.labels)  # type: ignore[attr-defined]
        return padded[:, :, 4:36, 4:36], labels
    return pipeline.train[:, :, 4:36, 4:36], pipeline.train_labels  # type: ignore[attr-defined]


def _lab_steps(trainer: Trainer, steps: list) -> None:
    ledger = trainer._ledger()
    for batch, _, index in steps:
        _lab_step(trainer, batch, index, ledger)
    ledger.close()  # read once per block, as a pass reads its ledger once


def _reference_steps(reference: Reference, steps: list) -> None:
    for batch, rate, index in steps:
        reference.step(*batch, rate, index)


def bench_loop(
    trainer: Trainer, reference_epoch: Callable[[], None], pairs: int, order: random.Random
) -> dict:
    """Per pair: the lab's timed region of one epoch (training pass + evaluation, as
    `run_training` times it) and the reference's (`Chapter.loop`), in a random order."""
    lab_s, reference_s = [], []
    for index in range(pairs + 1):

        def lab_epoch() -> None:
            trainer.train_epoch(0)
            trainer.evaluate()

        sides = [("lab", lab_epoch), ("reference", reference_epoch)]
        order.shuffle(sides)
        times = {name: _timed(run) for name, run in sides}
        if index:
            lab_s.append(times["lab"])
            reference_s.append(times["reference"])
    return _figure("timed loop (epoch + evaluation)", reference_s, lab_s)


def part8_loop(trainer: Trainer, reference: Reference) -> Callable[[], None]:
    """Part 8's reference epoch: augment the set on its device, train, evaluate with TTA."""
    config, pipeline = trainer.config, trainer.pipeline
    generator = torch.Generator(pipeline.generator_device).manual_seed(1)

    def epoch() -> None:
        data, labels = augmented_epoch(
            pipeline.train, pipeline.train_labels, generator, config.augment_max_options
        )
        losses = torch.zeros(())
        for step, (x, y) in enumerate(batches(data, labels, config.batch_size)):
            losses += reference.step(
                x, y, reference.step_rate(0, step, pipeline.steps_per_epoch), step
            )
        float(losses)
        reference.evaluate(pipeline.test, pipeline.test_labels, config.test_batch_size)

    return epoch


def part1_loop(
    trainer: Trainer, reference: part1.Part1Reference, data: Cifar
) -> Callable[[], None]:
    """Part 1's reference epoch: its own DataLoaders over its own once-preprocessed set
    (preprocessed here, outside the timed region, as the lab's is before training)."""
    config = trainer.config
    padded = part1.preprocess(data.train_images, CIFAR_MEAN, CIFAR_STD, part1.PAD)
    prepared = part1.preprocess(data.test_images, CIFAR_MEAN, CIFAR_STD, 0)
    train = part1.train_loader(padded, data.train_labels, config.batch_size, 1, 2)
    test = part1.evaluation_loader(prepared, data.test_labels, config.test_batch_size)

    def epoch() -> None:
        reference.train_epoch(train, 0)
        reference.evaluate(test)

    return epoch


@dataclass(frozen=True)
class Chapter:
    """A chapter's final recipe as the bench runs it: the lab series it ends, the fields its
    reference implements, and how the reference is built and its epoch run."""

    name: str  # --recipe
    series: str  # the `--series` whose last variant it is
    fields: dict[str, object]
    reference: Callable[[Trainer], object]
    loop: Callable[[Trainer, object, Cifar], Callable[[], None]]


def _part8_reference(trainer: Trainer) -> Reference:
    weights = list(trainer.model.state_dict().values())
    return Reference(weights, recipe_of(trainer.config, trainer.ema_rho, trainer.bn_momentum))


def _part1_reference(trainer: Trainer) -> part1.Part1Reference:
    weights = list(trainer.model.state_dict().values())
    return part1.Part1Reference(weights, part1_recipe_of(trainer.config, trainer.bn_momentum))


CHAPTERS = {
    chapter.name: chapter
    for chapter in (
        Chapter(
            "part8",
            "full",
            PART8_FIELDS,
            _part8_reference,
            lambda trainer, reference, data: part8_loop(trainer, reference),  # type: ignore[arg-type]
        ),
        Chapter("part1", "part1", PART1_FIELDS, _part1_reference, part1_loop),  # type: ignore[arg-type]
    )
}


def bench_accounting(trainer: Trainer, pairs: int, order: random.Random) -> dict:
    """Per pair: the lab's timed region of one epoch with its phase accounting on and off
    (`Trainer.account_phases`), in a random order: what the accounting itself costs. The
    figure's "reference" is the loop without it."""
    on_s, off_s = [], []
    for index in range(pairs + 1):
        sides = [True, False]
        order.shuffle(sides)
        times = {}
        for accounting in sides:
            trainer.account_phases = accounting
            times[accounting] = _timed(lambda: (trainer.train_epoch(0), trainer.evaluate()))
        if index:
            on_s.append(times[True])
            off_s.append(times[False])
    trainer.account_phases = True
    return _figure("phase accounting (on / off)", off_s, on_s)


def _figure(what: str, reference_s: list[float], lab_s: list[float]) -> dict:
    ratio = paired_ratio(reference_s, lab_s)
    low, high = ratio.ci95 if ratio.ci95 else (None, None)
    return {
        "what": what,
        "pairs": len(lab_s),
        "lab_median_s": sorted(lab_s)[len(lab_s) // 2],
        "reference_median_s": sorted(reference_s)[len(reference_s) // 2],
        "ratio": ratio.ratio,
        "low": low,
        "high": high,
        "within_limit": high is not None and high <= LIMIT,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--recipe",
        default=",".join(CHAPTERS),
        help=f"comma-separated chapters whose final recipe is timed (default {','.join(CHAPTERS)})",
    )
    parser.add_argument(
        "--preset", default="cpu-series", help="scale of the data (default cpu-series)"
    )
    parser.add_argument("--widths", default="8,16", help="comma-separated widths (default 8,16)")
    parser.add_argument("--pairs", type=int, default=30, help="paired steps per width (default 30)")
    parser.add_argument(
        "--loop-pairs", type=int, default=8, help="paired epochs per width (default 8)"
    )
    parser.add_argument("--block", type=int, default=5, help="steps per side per pair (5)")
    parser.add_argument(
        "--measure",
        default=",".join(MEASURES),
        help=f"comma-separated figures to measure (default all: {','.join(MEASURES)})",
    )
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: as lab.ablate)")
    parser.add_argument("--out", type=Path, default=None, help="append results here (JSON lines)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(parse_args(argv))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise LabError(f"--widths: expected comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise LabError(f"--widths: expected positive integers, got {text!r}")
    return widths


def _measures(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in MEASURES]
    if unknown or not names:
        raise LabError(f"--measure {text}: unknown figure; valid figures: {', '.join(MEASURES)}")
    return [name for name in MEASURES if name in names]


def _chapters(text: str) -> list[Chapter]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in CHAPTERS]
    if unknown or not names:
        raise LabError(f"--recipe {text}: unknown recipe; valid recipes: {', '.join(CHAPTERS)}")
    return [CHAPTERS[name] for name in dict.fromkeys(names)]


def _main(args: argparse.Namespace) -> int:
    chapters = _chapters(args.recipe)
    widths = _widths(args.widths)
    measures = _measures(args.measure)
    if args.pairs < 3 or args.loop_pairs < 3:
        raise LabError("--pairs and --loop-pairs: at least 3 (an interval needs 3 pairs)")
    if args.block < 1:
        raise LabError(f"--block: at least 1 step per side, got {args.block}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_cifar(find_or_fetch_data(args.data), progress=False)
    order = random.Random(args.seed)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **metadata(device)}
    for chapter in chapters:
        for width in widths:
            _bench_one(chapter, width, data, measures, order, args, meta, device)
    return 0


def _bench_one(
    chapter: Chapter,
    width: int,
    data: Cifar,
    measures: list[str],
    order: random.Random,
    args: argparse.Namespace,
    meta: dict,
    device: torch.device,
) -> None:
    """Every asked figure of one chapter's recipe at one width, printed and appended as each
    lands (a long run interrupted keeps them)."""
    config = final_config(args.preset, width, chapter.series)
    _check_supported(config, chapter)
    cut = subset(data, config.train_images, config.test_images, config.subset_seed)
    trainer = Trainer(config, cut, device, args.seed)
    trainer.warm_up()
    reference = chapter.reference(trainer)
    runs = {
        "step": partial(bench_steps, trainer, reference, args.pairs, order, args.block),
        "loop": lambda: bench_loop(
            trainer, chapter.loop(trainer, reference, cut), args.loop_pairs, order
        ),
        "accounting": partial(bench_accounting, trainer, args.loop_pairs, order),
    }
    for name in measures:
        row = {"recipe": chapter.name, "width": width, "preset": args.preset, **runs[name]()}
        print(_line(row), flush=True)
        if args.out is not None:
            with args.out.open("a") as handle:
                handle.write(json.dumps({**meta, **row}) + "\n")


def _line(row: dict) -> str:
    interval = f"[{row['low']:.3f}, {row['high']:.3f}]" if row["low"] is not None else "[n/a]"
    verdict = "within 3%" if row["within_limit"] else "NOT within 3%"
    return (
        f"{row['recipe']}  width {row['width']:>3}  {row['what']:<32}  "
        f"lab {row['lab_median_s'] * 1000:8.1f} ms  "
        f"reference {row['reference_median_s'] * 1000:8.1f} ms  lab/reference {row['ratio']:.3f} "
        f"{interval}  {verdict}  ({row['pairs']} pairs)"
    )


if __name__ == "__main__":
    sys.exit(main())
