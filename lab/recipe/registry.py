"""The registry of speedup steps (after timm's model registry).

Each module in `ablations/` registers one step with `@register_step(...)` on a function that
transforms a `Config`; `import ablations` (in the CLIs, the job and the tests) imports them
all. The module's docstring is the step's story. Where a step sits in the
series, and which of the article's figures it answers to, is the article's fact:
`lab.recipe.article.STEPS` lists the lab's steps under each of its steps, and that list is the
order in which steps are applied, cumulatively. A step the article did not make comes after
the article's, by name. Unknown names are rejected with the list of valid ones.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.errors import LabError
from lab.recipe import article
from lab.recipe.config import Config
from lab.recipe.counters import COUNTERS


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


def all_steps() -> list[Step]:
    """Every registered step in order. The steps register themselves when their modules are
    imported (`import ablations` imports them all); the registry imports none of them, so that
    it stays at the bottom of the layers and cheap to import."""
    if not _REGISTRY:
        raise RuntimeError("no step is registered: `import ablations` registers the lab's steps")
    return sorted(_REGISTRY.values(), key=_position)


def _position(step: Step) -> tuple[int, str]:
    """The article's order; a step outside the article after every step in it, by name."""
    if step.name in article.LAB_ORDER:
        return article.LAB_ORDER.index(step.name), ""
    return len(article.LAB_ORDER), step.name


# Named sequences of steps: the seed article's (Part 1) and every registered step (the whole
# series, Parts 1-8, and any step the article did not make).
SERIES: tuple[str, ...] = ("part1", "full")


def describe_series(name: str) -> str:
    """What `--series NAME` runs, for `--help`: its steps counted in the registry, and the
    article's times over them."""
    steps = series_steps(name)
    if name == "part1":
        return f"the seed article's {len(steps)} steps ({_figures(1)}); same as --all"
    in_article = sum(step.article_step is not None for step in steps)
    outside = len(steps) - in_article
    also = f" and {outside} the article did not make" if outside else ""
    return f"the series' {in_article} steps{also} ({_figures(article.STEPS[-1].part)})"


def _figures(last_part: int) -> str:
    """The article's time before its first step and after the last step of `last_part`."""
    last = max(step.number for step in article.STEPS if step.part <= last_part)
    parts = "Part 1" if last_part == 1 else f"Parts 1-{last_part}"
    times = f"{article.baseline_s():g} s -> {article.final_s(last):g} s"
    return f"{parts}: {times} on a {article.DEVICE}"


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
