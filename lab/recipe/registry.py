"""The registry of speedup steps (after timm's model registry).

Each module in `ablations/` registers one step with `@register_step(...)` on a function that
transforms a `Config`. The module's docstring is the step's story. Where a step sits in the
series, and which of the article's figures it answers to, is the article's fact:
`lab.recipe.article.STEPS` lists the lab's steps under each of its steps, and that list is the
order in which steps are applied, cumulatively. A step the article did not make comes after
the article's, by name. Unknown names are rejected with the list of valid ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.errors import LabError
from lab.recipe import article
from lab.recipe.config import Config
from lab.recipe.counters import COUNTERS
from lab.recipe.vocabulary import BASELINE, CONTROL, LEAVE_ONE_OUT, STEP


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    changes: str  # one line: what the step changes in the config
    apply: Callable[[Config], Config]
    # counter -> "down" | "up" | "zero" | "same": how the docstring says the step moves it
    expects: dict[str, str] = field(default_factory=dict)
    story: str = ""
    # "fp16": the step changes only what an fp16 model computes; with fp32 (a CPU) it is
    # expected to change no work, and a report says so beside the measurement.
    needs_precision: str | None = None

    @property
    def article_step(self) -> int | None:
        """The article's step number this step belongs to (None: not in the article)."""
        return article.NUMBER_OF.get(self.name)

    @property
    def order(self) -> int:
        """Position in the cumulative sequence, from 1."""
        return 1 + [step.name for step in all_steps()].index(self.name)

    @property
    def article(self) -> article.ArticleStep | None:
        return None if self.article_step is None else article.BY_NUMBER[self.article_step]

    @property
    def part(self) -> int | None:
        return None if self.article is None else self.article.part

    @property
    def article_saved_s(self) -> float | None:
        """Seconds the article's step saved on a V100 (shared by steps with the same number)."""
        if self.article_step is None:
            return None
        return article.step_saved_s(self.article_step)

    @property
    def article_shared_with(self) -> list[str]:
        return [
            s.name
            for s in all_steps()
            if s.article_step == self.article_step
            and s is not self
            and self.article_step is not None
        ]

    def facts(self) -> dict[str, Any]:
        """What a report says about the step, as a job stores it in plan.json when it starts:
        a report rebuilt later reads these, not the registry of the day (docs/records.md)."""
        return {
            "title": self.title,
            "article_step": self.article_step,
            "shared_with": self.article_shared_with,
            # [counter, direction] pairs: a list keeps the docstring's order through a JSON file
            # written with sorted keys.
            "expects": [[counter, moves] for counter, moves in self.expects.items()],
            "needs_precision": self.needs_precision,
        }


_REGISTRY: dict[str, Step] = {}


def register_step(
    *,
    name: str,
    title: str,
    changes: str,
    expects: dict[str, str] | None = None,
    needs_precision: str | None = None,
) -> Callable[[Callable[[Config], Config]], Callable[[Config], Config]]:
    """Register `apply(config) -> config` as a step; the module docstring is its story."""

    def decorator(apply: Callable[[Config], Config]) -> Callable[[Config], Config]:
        if name in _REGISTRY and _REGISTRY[name].apply.__module__ != apply.__module__:
            raise ValueError(f"step {name!r} registered twice")
        unknown = set(expects or {}) - set(COUNTERS)
        if unknown:
            raise ValueError(f"step {name!r} expects unknown counters {sorted(unknown)}")
        story = (sys.modules[apply.__module__].__doc__ or "").strip()
        _REGISTRY[name] = Step(
            name,
            title,
            changes,
            apply,
            dict(expects or {}),
            story,
            needs_precision,
        )
        return apply

    return decorator


def _discover() -> None:
    import ablations

    for module in pkgutil.iter_modules(ablations.__path__):
        importlib.import_module(f"ablations.{module.name}")


def all_steps() -> list[Step]:
    """Every registered step in order."""
    _discover()
    return sorted(_REGISTRY.values(), key=_position)


def _position(step: Step) -> tuple[int, str]:
    """The article's order; a step outside the article after every step in it, by name."""
    if step.name in article.LAB_ORDER:
        return article.LAB_ORDER.index(step.name), ""
    return len(article.LAB_ORDER), step.name


# Named sequences of steps: the seed article (Part 1) and the whole series (Parts 1-8).
def _series_line(steps: str, parts: str, last: int) -> str:
    return (
        f"{steps} ({parts}: {article.baseline_s():g} s -> {article.final_s(last):g} s "
        f"on a {article.DEVICE})"
    )


SERIES: dict[str, str] = {
    "part1": _series_line("the seed article's steps", "Part 1", article.PART1_LAST)
    + "; same as --all",
    "full": _series_line("every step of the series", "Parts 1-8", article.STEPS[-1].number),
}


def series_steps(name: str) -> list[Step]:
    """The steps of a named series, in order; LabError listing the valid names otherwise."""
    if name not in SERIES:
        raise LabError(f"--series {name}: unknown series; valid series: {', '.join(SERIES)}")
    if name == "full":
        return all_steps()
    return [s for s in all_steps() if s.part == 1]


def get_steps(names: list[str]) -> list[Step]:
    """The named steps in registry order; LabError listing the valid names on an unknown one."""
    steps = {step.name: step for step in all_steps()}
    unknown = [name for name in names if name not in steps]
    if unknown:
        raise LabError(
            f"--steps {','.join(unknown)}: unknown step; valid steps: {', '.join(steps)}"
        )
    return [step for step in all_steps() if step.name in names]


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


def cumulative_variants(base: Config, steps: list[Step]) -> list[Variant]:
    """baseline, +step1, +step2, ...: each variant applies one more step to the previous one."""
    variants = [Variant("baseline", (), base, BASELINE)]
    for step in steps:
        previous = variants[-1]
        variants.append(
            Variant(f"+{step.name}", (*previous.steps, step.name), step.apply(previous.config))
        )
    return variants


def control_variant(base: Config) -> Variant:
    """A second copy of the baseline, run in every round: its comparison with the baseline is
    the noise floor of the job."""
    return Variant(CONTROL_NAME, (), base, CONTROL)


def leave_one_out_variants(base: Config, steps: list[Step]) -> list[Variant]:
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
                f"-{left_out.name}", tuple(step.name for step in kept), config, LEAVE_ONE_OUT
            )
        )
    return variants
