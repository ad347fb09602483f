"""The docs' step tables and step counts, generated from the registry and the article's
figures (`lab.recipe.article`), so that no page restates them by hand.

Each table sits in its page between two marker lines,

    <!-- generated: NAME (python -m lab.doctables) -->
    ...
    <!-- end generated: NAME -->

and `python -m lab.doctables` rewrites what lies between them; tests/test_doctables.py
fails when a committed page differs from what this module generates.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import ablations  # noqa: F401  (registers the steps: the registry imports none)
from lab import REPO_ROOT
from lab.recipe import article
from lab.recipe.registry import Step, all_steps, series_start, series_steps
from lab.render.words import RULE_NAMES


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _shared_claim(step: Step) -> str:
    """The article's saving for a step, said once per article step: the first of the lab's
    steps that share it carries it, the others point to it."""
    assert step.article is not None and step.article_saved_s is not None
    first, *others = step.article.lab_steps
    if step.name != first:
        return f"(shared with `{first}`)"
    claim = f"-{_seconds(step.article_saved_s)} -> {_seconds(step.article.time_s)}"
    if others:
        claim += f" (with {', '.join(f'`{name}`' for name in others)})"
    return claim


def part1_table() -> str:
    """The README's table: the seed article's steps, what each changes, its V100 figures."""
    baseline = article.BY_NUMBER[0]
    lines = [
        f"| step | what changes | the article ({article.DEVICE}) |",
        "| --- | --- | --- |",
        f"| baseline | the DAWNBench ResNet-18 recipe (`docs/baseline.md`) | "
        f"{_seconds(baseline.time_s)}, {baseline.accuracy} |",
    ]
    for step in all_steps():
        if step.part == 1:
            lines.append(f"| `{step.name}` | {step.title} | {_shared_claim(step)} |")
    return "\n".join(lines)


def _time_after(step: article.ArticleStep) -> str:
    if step.before_s is None:
        return _seconds(step.time_s)
    return f"{_seconds(step.time_s)} ({_seconds(step.before_s)} before, re-timed on its rule)"


def series_table() -> str:
    """docs/series.md's table: every step in the order applied, with the article's figures."""
    lines = [
        f"| # | step | part | what changes (config fields) | {article.DEVICE} after | accuracy "
        "| source |",
        "| ---: | --- | ---: | --- | ---: | --- | --- |",
    ]
    baseline = article.BY_NUMBER[0]
    lines.append(
        f"| 0 | baseline | 1 | the DAWNBench recipe | {_seconds(baseline.time_s)} "
        f"| {baseline.accuracy} | {baseline.source} |"
    )
    for position, step in enumerate(series_steps("full"), start=1):
        claim = step.article
        if claim is None:
            cells = "| | not in the article | | |"
        else:
            shared = "" if len(claim.lab_steps) == 1 else f" (with {_others(step, claim)})"
            cells = (
                f"| {claim.part} | `{step.changes}` | {_time_after(claim)}{shared} "
                f"| {claim.accuracy or '-'} | {claim.source} |"
            )
        lines.append(f"| {position} | `{step.name}` {cells}")
    return "\n".join(lines)


def chapter2_table() -> str:
    """docs/series.md's chapter-2 table: each step with its script's A100 figures, and the
    plan's FLOPs per run at the sources' scale on their rule (`source_rule_flops`)."""
    from lab.engine.plan import plan_entry  # counting FLOPs needs torch
    from lab.recipe.config import Config
    from lab.recipe.variant import apply_steps, cumulative_variants

    base = apply_steps(Config(), series_start("airbench"))
    variants = cumulative_variants(base, series_steps("airbench"))[1:]
    lines = [
        f"| # | step | script | what changes (config fields) | {article.CHAPTER2_DEVICE} "
        "after | PFLOPs | epochs | mean accuracy | the plan's PFLOPs (their rule) |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
        f"| 0 | baseline | Page's final, re-timed | chapter 1's last recipe | "
        f"{_seconds(article.PAGE_ON_A100_S)} | {article.PAGE_ON_A100_PFLOPS:g} | "
        f"{article.PAGE_ON_A100_EPOCHS:g} | - | |",
    ]
    for position, (step, variant) in enumerate(
        zip(series_steps("airbench"), variants, strict=True), 1
    ):
        claim = step.article
        assert claim is not None and claim.pflops is not None
        ours = plan_entry(variant)["source_rule_flops"] / 1e15
        gap = 100 * (ours / claim.pflops - 1)
        lines.append(
            f"| {position} | `{step.name}` | `{claim.source}` | `{step.changes}` | "
            f"{_seconds(claim.time_s)} | {claim.pflops:g} | {claim.epochs:g} | "
            f"{claim.accuracy} | {ours:.3g} ({gap:+.1f}%) |"
        )
    return "\n".join(lines)


def _others(step: Step, claim: article.ArticleStep) -> str:
    return ", ".join(f"`{name}`" for name in claim.lab_steps if name != step.name)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def step_count() -> str:
    """The sentence that counts the steps (README, docs/series.md): the article's steps per
    part, the lab's steps that take them, and any registered step the article did not make."""
    steps = series_steps("full")
    seed = [s for s in steps if s.part == 1]
    later = [s for s in steps if s.part is not None and s.part != 1]
    outside = [s for s in steps if s.article_step is None]
    seed_article = [a for a in article.STEPS if a.part == 1 and a.number > 0]
    later_article = [a for a in article.STEPS if a.part not in (1, None)]
    last_part = max(a.part for a in article.STEPS if a.part is not None)
    chapter2 = series_steps("airbench")
    text = (
        f"Part 1 of the article sped the baseline up in {_count(len(seed_article), 'step')}, "
        f"which the lab splits into {len(seed)} (`--all`); Parts 2-{last_part} add "
        f"{len(later_article)} more, taken by {_count(len(later), 'step')} of the lab: "
        f"`--series full` runs {_count(len(steps), 'step')}"
    )
    if outside:
        names = ", ".join(f"`{s.name}`" for s in outside)
        text += f", {len(outside)} of them not in the article ({names}, after its steps)"
    return text + (
        f". Chapter 2 (airbench) takes its ablation chain in {_count(len(chapter2), 'step')} "
        f"(`--series airbench`, on top of Page's final recipe); `--series both` runs "
        f"{_count(len(all_steps()), 'step')}, from the DAWNBench baseline to Muon."
    )


def rule_table() -> str:
    """docs/series.md's timing rules: which parts timed what."""
    rules: dict[str, list[str]] = {}
    for step in article.STEPS:
        parts = rules.setdefault(step.rule, [])
        where = f"Part {step.part}" if step.part is not None else "chapter 2 (airbench)"
        if where not in parts:
            parts.append(where)
    lines = ["| the sources' parts | timed |", "| --- | --- |"]
    for rule, parts in rules.items():
        lines.append(f"| {', '.join(parts)} | {RULE_NAMES[rule]} |")
    return "\n".join(lines)


# page (relative to the checkout) -> block name -> the function that renders it
BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"part1-steps": part1_table, "step-count": step_count},
    "docs/series.md": {
        "step-count": step_count,
        "series-steps": series_table,
        "chapter2-steps": chapter2_table,
        "timing-rules": rule_table,
    },
}


def _block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {re.escape(name)} \(python -m lab.doctables\) -->\n)"
        rf"(.*?)"
        rf"(<!-- end generated: {re.escape(name)} -->)",
        re.DOTALL,
    )


def committed_block(text: str, name: str) -> str | None:
    """What a page holds between the block's markers (None: no markers)."""
    found = _block_pattern(name).search(text)
    return None if found is None else found.group(2).rstrip("\n")


def rewrite(page: Path, blocks: dict[str, Callable[[], str]]) -> bool:
    """Regenerate the page's blocks in place; True if the page changed."""
    text = page.read_text()
    new = text
    for name, render in blocks.items():
        if committed_block(new, name) is None:
            raise SystemExit(f"error: {page}: no markers for the generated block {name!r}")
        table = render()
        new = _block_pattern(name).sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(3), new)
    if new != text:
        page.write_text(new)
    return new != text


def main() -> int:
    for relative, blocks in BLOCKS.items():
        if rewrite(REPO_ROOT / relative, blocks):
            print(f"rewrote {relative}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
