"""The article's figures and the order of its steps, kept in one place: David Page, "How to train
your ResNet", Part 1 and the rest of the series (docs/article.md says where each figure comes
from). The registry, `--list` and the docs' step tables (lab/doctables.py) read them
from here; a job stores them in its plan.json when it starts
(`series_facts`), and its summary, report and charts read them there.

Each entry is the V100 time of the whole run after a step of the series, numbered in order:
0 is the reproduced DAWNBench baseline, 1-4 the steps of Part 1 (the lab splits two of them),
5-18 the steps of Parts 2-8. Each entry names the lab's steps (files in `ablations/`) that make
it up, in the order they are applied: that list is the lab's step order.

Times were taken on two rules: Parts 1-4 timed training and the per-epoch evaluation, not
preprocessing; Part 8 times training and preprocessing, not evaluation, and re-measured the
Part 4 network on that rule (79 s -> 75 s) before its first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.recipe.vocabulary import TRAIN_EVAL, TRAIN_PREPROCESS

DEVICE = "V100"


@dataclass(frozen=True)
class ArticleStep:
    number: int  # position in the series (0: the baseline)
    part: int  # the part of the series that took it
    label: str  # short name for charts
    time_s: float  # V100 seconds of the whole run after this step
    accuracy: str  # test accuracy as the source reports it
    rule: str  # TRAIN_EVAL or TRAIN_PREPROCESS
    source: str  # where the figure comes from (docs/article.md, "Sources": E, B, ...)
    lab_steps: tuple[str, ...]  # the lab's steps that make up this one, in the order applied
    before_s: float | None = None  # the time before, when it was re-measured on this rule


STEPS: tuple[ArticleStep, ...] = (
    ArticleStep(0, 1, "baseline", 356.0, "3/5 runs reach 94%", TRAIN_EVAL, "Part 1", ()),
    ArticleStep(
        1,
        1,
        "BN dedupe\n+ smooth LR",
        323.0,
        "4/5 runs",
        TRAIN_EVAL,
        "Part 1",
        ("bn_dedupe", "smooth_lr"),
    ),
    ArticleStep(
        2,
        1,
        "preprocess\n+ 1 worker",
        308.0,
        "",
        TRAIN_EVAL,
        "Part 1",
        ("cached_preprocessing", "single_worker"),
    ),
    ArticleStep(3, 1, "bulk RNG", 301.0, "", TRAIN_EVAL, "Part 1", ("bulk_rng",)),
    ArticleStep(
        4,
        1,
        "main-thread\naug",
        297.0,
        "94.12% (logged run)",
        TRAIN_EVAL,
        "Part 1",
        ("main_thread_aug",),
    ),
    ArticleStep(
        5, 2, "batch 512", 256.0, "93.88% (1 run); 3/5 >= 94%", TRAIN_EVAL, "E 13", ("batch_512",)
    ),
    ArticleStep(6, 3, "fp32 BN", 186.0, "94.03%", TRAIN_EVAL, "E 15", ("fp32_batchnorm",)),
    ArticleStep(7, 3, "cutout", 161.0, "94.15%", TRAIN_EVAL, "E 17", ("cutout",)),
    ArticleStep(8, 3, "batch 768", 154.0, "94.23%", TRAIN_EVAL, "E 19", ("batch_768",)),
    ArticleStep(9, 4, "ResNet-9", 79.0, "94.04% (median 94.08%)", TRAIN_EVAL, "E 39", ("resnet9",)),
    ArticleStep(
        10,
        8,
        "GPU aug",
        70.0,
        "not reported",
        TRAIN_PREPROCESS,
        "B 28 (under 70 s)",
        ("gpu_augmentation",),
        before_s=75.0,
    ),
    ArticleStep(11, 8, "layer order", 64.0, "94.1%", TRAIN_PREPROCESS, "B 33-40", ("layer_order",)),
    ArticleStep(
        12, 8, "label smooth", 59.0, "94.1%", TRAIN_PREPROCESS, "B 41-45", ("label_smoothing",)
    ),
    ArticleStep(13, 8, "CELU", 52.0, "94.1%", TRAIN_PREPROCESS, "B 46-52", ("celu",)),
    ArticleStep(
        14, 8, "ghost BN", 46.0, "94.1%", TRAIN_PREPROCESS, "B 53-58", ("ghost_batchnorm",)
    ),
    ArticleStep(
        15, 8, "frozen BN\nscale", 43.0, "94.1%", TRAIN_PREPROCESS, "B 59-67", ("frozen_bn_scale",)
    ),
    ArticleStep(16, 8, "whitening", 36.0, "94.1%", TRAIN_PREPROCESS, "B 68-75", ("whitening",)),
    ArticleStep(17, 8, "EMA", 33.5, "94.1%", TRAIN_PREPROCESS, "B 76-78", ("ema",)),
    ArticleStep(18, 8, "flip TTA", 26.0, "94.1% (with TTA)", TRAIN_PREPROCESS, "B 79-85", ("tta",)),
)
BY_NUMBER: dict[int, ArticleStep] = {step.number: step for step in STEPS}
# The lab's step order: the article's, with its shared steps split in the order listed.
LAB_ORDER: tuple[str, ...] = tuple(name for step in STEPS for name in step.lab_steps)
NUMBER_OF: dict[str, int] = {name: step.number for step in STEPS for name in step.lab_steps}
TIMES_S: dict[int, float] = {step.number: step.time_s for step in STEPS}


def step_saved_s(number: int) -> float:
    """Seconds the article's step `number` saved, on its own rule (shared by the lab's steps
    with that number)."""
    step = BY_NUMBER[number]
    before = step.before_s if step.before_s is not None else TIMES_S[number - 1]
    return before - step.time_s


def series_facts() -> dict[str, Any]:
    """The article's figures as a job stores them in plan.json when it starts: a report rebuilt
    later reads these, not this module of the day (docs/records.md)."""
    return {
        "device": DEVICE,
        "steps": [
            {
                "number": step.number,
                "part": step.part,
                "label": step.label,
                "time_s": step.time_s,
                "saved_s": None if step.number == 0 else step_saved_s(step.number),
                "accuracy": step.accuracy,
                "rule": step.rule,
                "source": step.source,
            }
            for step in STEPS
        ],
    }


def baseline_s() -> float:
    """The article's reproduced DAWNBench baseline, seconds on a V100."""
    return TIMES_S[0]


def final_s(last: int | None = None) -> float:
    """The article's time after step `last` (default: the end of Part 1)."""
    return TIMES_S[PART1_LAST if last is None else last]


PART1_LAST = 4  # the last step of Part 1, the seed article
