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
from lab.recipe.vocabulary import on_a


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
    # "cuda": the step acts only on that device (torch.compile); elsewhere it changes no work,
    # and a report says so beside the measurement.
    needs_device: str | None = None

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
            "needs_device": self.needs_device,
        }


_REGISTRY: dict[str, Step] = {}


def register_step(
    *,
    name: str,
    title: str,
    changes: str,
    expects: dict[str, str] | None = None,
    needs_precision: str | None = None,
    needs_device: str | None = None,
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
            needs_device,
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
    """The sources' order; a step outside them after chapter 1's steps (it is a step on
    Page's recipes, run with them), by name, and before chapter 2's."""
    chapter1 = [n for n in article.LAB_ORDER if article.NUMBER_OF[n] <= article.CHAPTER1_LAST]
    if step.name in chapter1:
        return chapter1.index(step.name), ""
    if step.name in article.LAB_ORDER:
        return 1 + article.LAB_ORDER.index(step.name), ""
    return len(chapter1), step.name


# Named sequences of steps: the seed article's (Part 1); Page's whole series (chapter 1, Parts
# 1-8, and any registered step the article did not make; "full", the name records of chapter 1
# carry); airbench's chain (chapter 2, run on top of chapter 1's final recipe: its baseline is
# Page's last step); and both chapters end to end.
SERIES: tuple[str, ...] = ("part1", "full", "airbench", "both")


def describe_series(name: str) -> str:
    """What `--series NAME` runs, for `--help`: its steps counted in the registry, and the
    sources' times over them."""
    steps = series_steps(name)
    if name == "part1":
        figures = _figures(1, article.PART1_LAST)
        return f"the seed article's {len(steps)} steps ({figures}); same as --all"
    if name == "airbench":
        return (
            f"chapter 2's {len(steps)} steps after Page's final recipe "
            f"({_figures(article.FIRST_OF_CHAPTER2, article.STEPS[-1].number)})"
        )
    in_article = sum(step.article_step is not None for step in steps)
    outside = len(steps) - in_article
    also = f" and {outside} the article did not make" if outside else ""
    if name == "both":
        return (
            f"both chapters' {in_article} steps{also} ({_figures(1, article.CHAPTER1_LAST)}, "
            f"then {_figures(article.FIRST_OF_CHAPTER2, article.STEPS[-1].number)})"
        )
    return f"the series' {in_article} steps{also} ({_figures(1, article.CHAPTER1_LAST)})"


def _figures(first: int, last: int) -> str:
    """The sources' time before step `first` and after step `last`, on their device."""
    start, end = article.BY_NUMBER[first], article.BY_NUMBER[last]
    if start.chapter == 2:
        where = "chapter 2"
        before = start.before_s if start.before_s is not None else article.TIMES_S[first - 1]
    else:
        where = "Part 1" if end.part == 1 else f"Parts 1-{end.part}"
        before = article.baseline_s()
    return f"{where}: {before:g} s -> {end.time_s:g} s on {on_a(end.device)}"


def _chapter(step: Step) -> int:
    """The chapter a step belongs to: its article step's, or 1 for a step outside the
    sources (it runs with Page's series, after its steps)."""
    return 1 if step.article is None else step.article.chapter


def series_steps(name: str) -> list[Step]:
    """The steps of a named series, in order; LabError listing the valid names otherwise."""
    if name not in SERIES:
        raise LabError(f"--series {name}: unknown series; valid series: {', '.join(SERIES)}")
    if name == "both":
        return all_steps()
    if name == "full":
        return [s for s in all_steps() if _chapter(s) == 1]
    if name == "airbench":
        return [s for s in all_steps() if _chapter(s) == 2]
    return [s for s in all_steps() if s.part == 1]


def series_start(name: str) -> list[Step]:
    """The steps a series applies before its chain (its baseline's recipe): chapter 1's for
    chapter 2, whose re-base starts from Page's final recipe; none for the others."""
    if name == "airbench":
        return series_steps("full")
    return []


def get_steps(names: list[str]) -> list[Step]:
    """The named steps in registry order; LabError listing the valid names on an unknown one."""
    steps = {step.name: step for step in all_steps()}
    unknown = [name for name in names if name not in steps]
    if unknown:
        raise LabError(
            f"--steps {','.join(unknown)}: unknown step; valid steps: {', '.join(steps)}"
        )
    return [step for step in all_steps() if step.name in names]
