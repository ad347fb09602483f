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

from lab.recipe.vocabulary import TRAIN_EVAL, TRAIN_PREPROCESS, WHITEN_TRAIN_FINAL_EVAL

DEVICE = "V100"  # chapter 1's (Page's) device; each step names its own (`ArticleStep.device`)
CHAPTER2_DEVICE = "A100"  # airbench's figures: seconds and PFLOPs on one A100


FIRST_OF_CHAPTER2 = 19  # the number of chapter 2's first step (its re-base)
# Page's final recipe (cifar10-fast) re-timed by the zoo on an A100: chapter 2's start.
PAGE_ON_A100_S, PAGE_ON_A100_PFLOPS, PAGE_ON_A100_EPOCHS = 14.9, 1.14, 10.0


@dataclass(frozen=True)
class ArticleStep:
    number: int  # position in the series (0: the baseline)
    part: int | None  # the part of Page's series that took it (None: chapter 2)
    label: str  # short name for charts
    time_s: float  # V100 seconds of the whole run after this step
    accuracy: str  # test accuracy as the source reports it
    rule: str  # TRAIN_EVAL or TRAIN_PREPROCESS
    source: str  # where the figure comes from (docs/article.md, "Sources": E, B, ...)
    lab_steps: tuple[str, ...]  # the lab's steps that make up this one, in the order applied
    before_s: float | None = None  # the time before, when it was re-measured on this rule
    # (or, at a chapter's start, on this chapter's device)
    chapter: int = 1  # 1: Page's series; 2: airbench's ablation chain
    device: str = DEVICE  # the GPU the figure was timed on
    pflops: float | None = None  # the source's PFLOPs for the whole run (chapter 2)
    epochs: float | None = None  # the source's epochs for the run (chapter 2)

    @property
    def where(self) -> str:
        """Where in the sources the step is: "Part 3", or chapter 2's script."""
        return f"Part {self.part}" if self.chapter == 1 else self.source


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
    *(
        ArticleStep(
            number,
            None,  # not one of Page's parts: `where` names the step's script
            label,
            time_s,
            accuracy,
            WHITEN_TRAIN_FINAL_EVAL,
            script,
            (step,),
            before_s=PAGE_ON_A100_S if number == FIRST_OF_CHAPTER2 else None,
            chapter=2,
            device=CHAPTER2_DEVICE,
            pflops=pflops,
            epochs=epochs,
        )
        for number, (step, label, script, time_s, pflops, epochs, accuracy) in enumerate(
            (
                # The zoo's table gives main0 34 epochs; its script's hyp 45 (docs/series.md).
                (
                    "airbench",
                    "airbench\nre-base",
                    "main0_network",
                    14.2,
                    1.22,
                    34.0,
                    "94.00% mean (50 runs)",
                ),
                (
                    "patch_whitening",
                    "2x2\nwhitening",
                    "main1_whiten",
                    8.6,
                    0.76,
                    21.0,
                    "94.00% mean (200 runs)",
                ),
                ("dirac_init", "dirac", "main2_dirac", 7.3, 0.65, 18.0, "94.01% mean (200 runs)"),
                (
                    "bn_bias_lr",
                    "BN bias\nlr x64",
                    "main3_scalebias",
                    5.5,
                    0.49,
                    13.5,
                    "94.01% mean (200 runs)",
                ),
                (
                    "whitening_bias_freeze",
                    "freeze\nbias",
                    "main4_freeze",
                    5.2,
                    0.47,
                    13.5,
                    "94.03% mean (500 runs)",
                ),
                (
                    "lookahead",
                    "Lookahead",
                    "main5_lookahead",
                    4.6,
                    0.42,
                    12.0,
                    "94.02% mean (200 runs)",
                ),
                (
                    "multicrop_tta",
                    "6-view\nTTA",
                    "main6_tta",
                    4.3,
                    0.39,
                    10.8,
                    "94.02% mean (200 runs)",
                ),
                (
                    "alternating_flip",
                    "alternating\nflip",
                    "main7_mirror",
                    3.9,
                    0.36,
                    9.9,
                    "94.02% mean (700 runs)",
                ),
                (
                    "torch_compile",
                    "compile",
                    "main8_compile",
                    3.5,
                    0.36,
                    9.9,
                    "not reported (the paper: 3.29 s)",
                ),
                ("muon", "Muon", "airbench94_muon", 2.59, 0.29, 8.0, "94.01% mean (200 runs)"),
            ),
            start=FIRST_OF_CHAPTER2,
        )
    ),
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
    return round(before - step.time_s, 6)  # the figures' own precision, not a float's


def series_facts() -> dict[str, Any]:
    """The article's figures as a job stores them in plan.json when it starts: a report rebuilt
    later reads these, not this module of the day (docs/records.md)."""
    return {
        "device": DEVICE,
        "steps": [
            {
                "number": step.number,
                "part": step.part,
                "chapter": step.chapter,
                "where": step.where,
                "device": step.device,
                "before_s": step.before_s,
                "pflops": step.pflops,
                "epochs": step.epochs,
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
CHAPTER1_LAST = FIRST_OF_CHAPTER2 - 1  # Page's last step (flip TTA, 26 s)
