"""Variants: the configs a job runs, built from a base config and steps of the registry: the
cumulative chain (baseline, +step1, +step2, ...), the control (a second baseline) and the
leave-one-out variants (every step but one)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError
from lab.recipe.config import Config
from lab.recipe.registry import Step
from lab.recipe.vocabulary import BASELINE, CONTROL, LEAVE_ONE_OUT, STEP

CONTROL_NAME = "baseline (control)"


@dataclass(frozen=True)
class Variant:
    name: str  # "baseline", "+<last step>", "baseline (control)" or "-<left-out step>"
    steps: tuple[str, ...]  # steps applied, in order
    config: Config
    role: str = STEP  # BASELINE, STEP, CONTROL or LEAVE_ONE_OUT


def apply_steps(base: Config, steps: list[Step]) -> Config:
    config = base
    for step in steps:
        config = step.apply(config)
    return config


def cumulative_variants(
    base: Config, steps: list[Step], start: tuple[str, ...] = ()
) -> list[Variant]:
    """baseline, +step1, +step2, ...: each variant applies one more step to the previous one.
    `start`: the steps `base` already has (`--from`), listed first in every variant's steps."""
    variants = [Variant("baseline", start, base, BASELINE)]
    for step in steps:
        previous = variants[-1]
        variants.append(
            Variant(f"+{step.name}", (*previous.steps, step.name), step.apply(previous.config))
        )
    return variants


def control_variant(base: Config, start: tuple[str, ...] = ()) -> Variant:
    """A second copy of the baseline, run in every round: its comparison with the baseline is
    the noise floor of the job."""
    return Variant(CONTROL_NAME, start, base, CONTROL)


def leave_one_out_variants(
    base: Config, steps: list[Step], start: tuple[str, ...] = ()
) -> list[Variant]:
    """For each step but the last, every step except that one ("-<step>"). The last step's
    leave-one-out variant is the cumulative variant before it, which the job runs already. A
    step that later steps cannot do without gets no variant."""
    variants = []
    for left_out in steps[:-1]:
        kept = [step for step in steps if step is not left_out]
        try:
            config = apply_steps(base, kept)
        except LabError:
            # A later step depends on this one (ghost BatchNorm needs the dropped last batch
            # of the device pipeline): without it there is nothing to run.
            continue
        variants.append(
            Variant(
                f"-{left_out.name}",
                (*start, *(step.name for step in kept)),
                config,
                LEAVE_ONE_OUT,
            )
        )
    return variants
