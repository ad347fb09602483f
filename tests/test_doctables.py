"""The docs cannot drift from the code: the step tables are exactly what lab.doctables
generates from the registry and lab/recipe/article.py, and the README's figures of the
committed examples are those of their summary.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from throwaway_step import NAME as OUTSIDE
from throwaway_step import step_outside_the_article

from lab import doctables
from lab.recipe import article
from lab.recipe.registry import all_steps, series_steps

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "page,name",
    [(page, name) for page, blocks in doctables.BLOCKS.items() for name in blocks],
)
def test_committed_tables_are_the_generated_ones(page, name):
    committed = doctables.committed_block((ROOT / page).read_text(), name)
    assert committed is not None, f"{page}: the markers of {name!r} are missing"
    assert committed == doctables.BLOCKS[page][name](), (
        f"{page}: table {name!r} differs from the generated one; run python -m lab.doctables"
    )


def test_every_step_and_article_figure_is_in_the_series_table():
    """Chapter 1's steps and figures in the series table, chapter 2's in its own."""
    tables = {1: doctables.series_table(), 2: doctables.chapter2_table()}
    for step in series_steps("full"):
        assert f"`{step.name}`" in tables[1]
    for step in series_steps("airbench"):
        assert f"`{step.name}`" in tables[2]
    for figure in article.STEPS:
        assert f"{figure.time_s:g} s" in tables[figure.chapter]


def test_the_step_order_is_the_articles():
    steps = all_steps()
    in_article = [step for step in steps if step.article_step is not None]
    assert [step.name for step in in_article] == list(article.LAB_ORDER)  # each once
    assert steps[: len(in_article)] == in_article  # any step outside the article after them
    assert [step.order for step in steps] == list(range(1, len(steps) + 1))
    for step in in_article:
        assert step.name in article.BY_NUMBER[step.article_step].lab_steps


def test_the_step_count_is_the_registrys():
    sentence = doctables.step_count()
    assert f"`--series full` runs {len(series_steps('full'))} steps" in sentence
    assert f"in {len(series_steps('airbench'))} steps (`--series airbench`" in sentence
    assert f"`--series both` runs {len(series_steps('both'))} steps" in sentence
    assert f"splits into {len(series_steps('part1'))} (`--all`)" in sentence


def test_a_step_outside_the_article_gets_a_row_and_a_count(tmp_path):
    """A user's own step (the tests' throw-away one): the tables number it after the article's
    steps, say it is not in the article, count it, and rewrite a page to say so; the README's
    table of Part 1 does not change. Once it is gone, the committed pages are current again."""
    before = _generated()
    with step_outside_the_article(tmp_path):
        count = len(series_steps("full"))  # chapter 1's, the user's step last
        assert f"| {count} | `{OUTSIDE}` | | not in the article | | |" in doctables.series_table()
        assert doctables.part1_table() == before["README.md"]["part1-steps"]
        sentence = doctables.step_count()
        assert f"`--series full` runs {count} steps, 1 of them not in the article" in sentence
        page = tmp_path / "series.md"
        page.write_text((ROOT / "docs" / "series.md").read_text())
        assert doctables.rewrite(page, doctables.BLOCKS["docs/series.md"])
        assert f"`{OUTSIDE}`" in page.read_text()
    assert _generated() == before


def _generated() -> dict[str, dict[str, str]]:
    return {
        page: {name: render() for name, render in blocks.items()}
        for page, blocks in doctables.BLOCKS.items()
    }


def test_rewrite_replaces_only_the_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "before\n<!-- generated: part1-steps (python -m lab.doctables) -->\nstale\n"
        "<!-- end generated: part1-steps -->\nafter\n"
    )
    assert doctables.rewrite(page, {"part1-steps": doctables.part1_table})
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "stale" not in text
    assert doctables.committed_block(text, "part1-steps") == doctables.part1_table()
    assert not doctables.rewrite(page, {"part1-steps": doctables.part1_table})


# ----------------------------------------------------------------------------- the examples


def _section(example: str) -> str:
    """The README's text about one committed example: from its link to the next example's."""
    start = README.index(f"[`reports/{example}/`]")
    following = README.find("[`reports/example-", start + 1)
    return README[start : following if following > 0 else None]


def _prose(section: str) -> str:
    """The section's words with its line breaks and emphasis removed."""
    return " ".join(section.replace("**", "").split())


def _summary(example: str) -> dict:
    return json.loads((ROOT / "reports" / example / "summary.json").read_text())


def _signed(value: float, digits: int = 1) -> str:
    return f"{value:+.{digits}f}"


def _interval(saved: dict) -> str:
    low, high = saved["ci95"]
    return f"{_signed(saved['estimate'])}% [{_signed(low)}, {_signed(high)}]"


def _step_rows(section: str) -> dict[str, str]:
    return dict(re.findall(r"^\| `(\w+)` \| (.*)$", section, re.MULTILINE))


def test_readme_quotes_the_cpu_example_as_measured():
    summary, section = _summary("example-cpu"), _section("example-cpu")
    rows = _step_rows(section)
    assert set(rows) == {step["name"] for step in summary["steps"]}
    for step in summary["steps"]:
        quoted = f"{_signed(step['saved_s']['estimate'], 2)} s, {_interval(step['saved_pct'])}"
        assert rows[step["name"]].startswith(quoted), (step["name"], rows[step["name"]], quoted)
        assert step["saved_pct"]["verdict"] in rows[step["name"]]
    total, prose = summary["total"], _prose(section)
    assert f"Baseline {total['baseline_s']:.2f} s -> final {total['final_s']:.2f} s" in prose
    assert f"{total['saved_s']:.2f} s difference" in prose
    assert f"control read {_interval(summary['control']['saved_pct'])}" in prose
    assert f"Minimum detectable saving: {summary['power']['min_detectable_pct']:.1f}%" in prose


def test_readme_quotes_the_series_example_as_measured():
    summary, section = _summary("example-cpu-series"), _section("example-cpu-series")
    rows = _step_rows(section)
    steps = {step["name"]: step for step in summary["steps"]}
    significant = [s for s in summary["steps"] if s["saved_pct"]["verdict"] != "not significant"]
    assert set(rows) == {step["name"] for step in significant}
    for name, row in rows.items():
        step = steps[name]
        assert row.startswith(_interval(step["saved_pct"])), (name, row)
        assert f"| {step['article']['saved_pct']:.1f}%" in row, (name, row)
    total, prose = summary["total"], _prose(section)
    assert f"Baseline {total['baseline_s']:.2f} s -> final {total['final_s']:.2f} s" in prose
    assert f"({total['saved_pct']:.0f}% saved" in prose
    assert f"minimum detectable saving is {summary['power']['min_detectable_pct']:.0f}%" in prose


def _points(change: dict) -> str:
    low, high = change["low_pts"], change["high_pts"]
    return f"{_signed(change['estimate_pts'])} [{_signed(low)}, {_signed(high)}]"


def test_readme_quotes_the_airbench_example_as_measured():
    """Every step of chapter 2: its saving here, its accuracy change, its source's saving."""
    summary, section = _summary("example-cpu-airbench"), _section("example-cpu-airbench")
    rows = _step_rows(section)
    assert set(rows) == {step["name"] for step in summary["steps"]}
    for step in summary["steps"]:
        row = rows[step["name"]]
        assert row.startswith(_interval(step["saved_pct"])), (step["name"], row)
        assert _points(step["accuracy_change"]) in row, (step["name"], row)
        assert f"| {step['article']['saved_pct']:.1f}%" in row, (step["name"], row)
    total, prose, power = summary["total"], _prose(section), summary["power"]
    assert f"Baseline {total['baseline_s']:.2f} s -> final {total['final_s']:.2f} s" in prose
    assert f"({total['saved_pct']:.0f}% saved" in prose
    assert f"minimum detectable saving {power['min_detectable_pct']:.1f}%" in prose
    assert f"control read {_interval(summary['control']['saved_pct'])}" in prose
    assert f"{summary['rounds']} clean rounds" in prose and not summary["disturbed_rounds"]
