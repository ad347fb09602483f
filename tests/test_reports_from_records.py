"""A report is a pure function of its records and its plan: rebuilt with a step's title and the
article's figure for it changed in the live registry, every committed example reads the same,
byte for byte, as its committed report.md. The examples are schema-2 jobs, so this is also the
proof that an old job still renders (through `lab.records.plan.upgrade_plan`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import matplotlib
import pytest

from lab import REPO_ROOT
from lab.analysis.summary import build_summary
from lab.engine.job import Job
from lab.errors import LabError
from lab.recipe import article, registry
from lab.records import outputs
from lab.records.jsonl import read_records
from lab.records.plan import read_plan
from lab.records.summary import Summary
from lab.render.report import render_report, write_report

EXAMPLES = sorted(p for p in (REPO_ROOT / "reports").glob("example-*") if p.is_dir())
CHANGED_TITLE = "a title the registry took later"
CHARTS_DRAWN_WITH = "3.11.2"  # the matplotlib that drew the committed examples' charts


def _rebuild(out: Path) -> tuple[Summary, str]:
    """summary.json's data and report.md's text, as `python -m lab.report` builds them."""
    optional = [out / outputs.PROFILE, out / outputs.SESSIONS]
    profiles, sessions = (read_records(p) if p.exists() else [] for p in optional)
    summary = build_summary(
        read_records(out / outputs.RESULTS), read_plan(out / outputs.PLAN), profiles, sessions
    )
    return summary, render_report(summary)


def _change_the_live_facts(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The step's title, and the article's time for its step, as a later lab might have them."""
    step = next(s for s in registry.all_steps() if s.name == name)
    later = dataclasses.replace(step, title=CHANGED_TITLE, needs_precision="fp16")
    monkeypatch.setitem(registry._REGISTRY, name, later)
    number = step.article_step
    if number is None:
        return
    changed = dataclasses.replace(article.BY_NUMBER[number], time_s=1.0, label="later")
    monkeypatch.setitem(article.BY_NUMBER, number, changed)
    monkeypatch.setitem(article.TIMES_S, number, 1.0)
    monkeypatch.setattr(
        article, "STEPS", tuple(changed if s.number == number else s for s in article.STEPS)
    )


def test_the_examples_are_there():
    assert len(EXAMPLES) >= 4, EXAMPLES


@pytest.mark.parametrize("out", EXAMPLES, ids=lambda p: p.name)
def test_an_example_rebuilds_byte_identical_whatever_the_registry_says(out, monkeypatch):
    plan = json.loads((out / outputs.PLAN).read_text())
    expected_summary, expected_report = _rebuild(out)
    for name in plan["job"]["steps"]:
        _change_the_live_facts(monkeypatch, name)
    # The change is live: the registry of the day says the new title (a job planned now
    # stores it, the next test), but the rebuilt report does not.
    assert registry.get_steps(plan["job"]["steps"])[0].title == CHANGED_TITLE
    summary, report = _rebuild(out)
    assert report == expected_report == (out / outputs.REPORT).read_text()
    assert summary == expected_summary
    assert summary.to_json() == (out / outputs.SUMMARY).read_text()
    assert all(step.title != CHANGED_TITLE for step in summary.steps)


def test_a_new_job_stores_the_facts_its_report_will_state(tmp_path, monkeypatch):
    _change_the_live_facts(monkeypatch, "bulk_rng")
    job = Job(preset="smoke", steps=("bulk_rng",), rounds=1, seed=0, order_seed=0, device="cpu")
    job.save(tmp_path, "0123456789abcdef")
    plan = read_plan(tmp_path / outputs.PLAN)
    facts = plan["step_facts"]["bulk_rng"]
    assert facts["title"] == CHANGED_TITLE and facts["needs_precision"] == "fp16"
    number = facts["article_step"]
    stored = next(s for s in plan["article"]["steps"] if s["number"] == number)
    assert (stored["time_s"], stored["label"]) == (1.0, "later")


def test_records_without_their_plan_are_a_clean_error(tmp_path):
    results = (EXAMPLES[0] / outputs.RESULTS).read_bytes()
    (tmp_path / outputs.RESULTS).write_bytes(results)
    with pytest.raises(LabError, match="plan.json: no such plan"):
        write_report(tmp_path)


def _report_files(out: Path) -> dict[str, bytes]:
    """Every file `python -m lab.report` writes, by path, except TensorBoard's event files,
    whose names carry the time, host and process that wrote them (TensorBoard's convention)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "tfevents" not in p.name and p.name not in ("results.jsonl",)
    }


@pytest.mark.parametrize("out", EXAMPLES, ids=lambda p: p.name)
def test_rebuilding_writes_the_committed_files_byte_for_byte(out, tmp_path):
    """summary.json, report.md and the charts (PNG and SVG: no date, salted ids) of a rebuild
    are the committed bytes; a chart that changed with its summary unchanged fails here. Another
    matplotlib draws other pixels, so the charts are compared under the one that drew them."""
    if matplotlib.__version__ != CHARTS_DRAWN_WITH:
        pytest.skip(f"the committed charts were drawn by matplotlib {CHARTS_DRAWN_WITH}")
    copy = tmp_path / out.name
    shutil.copytree(out, copy)
    write_report(copy)
    assert _report_files(copy) == _report_files(out)
