"""Order-independent attribution (`--leave-one-out`) and `python -m lab.compare`, on a real
smoke-scale job, plus result sets derived from it where a known difference is needed.

The real job's verdicts are whatever its noise makes them, so they are checked against their own
intervals (`assert_verdict_follows_interval`); a verdict the test expects in advance is asserted
only on derived jobs whose times are set to known values."""

from __future__ import annotations

import json
import math

import pytest

from lab.recipe.variant import CONTROL_NAME
from lab.records.summary import summary_from_dict
from lab.render.words import interaction_reading
from tests.conftest import (
    LOO_ROUNDS,
    assert_one_line_error,
    assert_verdict_follows_interval,
    call_cli,
    read_jsonl,
    rounds_of,
)

ROUNDS = LOO_ROUNDS


def test_leave_one_out_runs_every_step_but_one_in_every_round(loo_out):
    timed = read_jsonl(loo_out / "results.jsonl")
    assert not any(r["warmup"] for r in timed)  # the job ran with --no-warmup
    names = ["baseline", "+single_worker", "+main_thread_aug", CONTROL_NAME, "-single_worker"]
    for round_index in range(ROUNDS):
        assert sorted(r["variant"] for r in timed if r["round"] == round_index) == sorted(names)
    without = next(r for r in timed if r["variant"] == "-single_worker")
    assert without["role"] == "leave_one_out" and without["steps"] == ["main_thread_aug"]
    assert without["config"]["train_workers"] == 0


def test_leave_one_out_savings_and_interactions(loo_out):
    summary = json.loads((loo_out / "summary.json").read_text())
    assert summary["leave_one_out"]
    first, last = summary["steps"]
    readings = {s.name: interaction_reading(s) for s in summary_from_dict(summary).steps}
    assert first["leave_one_out"]["variant"] == "-single_worker"
    # The last step added last is the cumulative comparison itself: no interaction.
    assert last["leave_one_out"]["variant"] == "+single_worker"
    assert last["leave_one_out"]["saved_pct"] == last["saved_pct"]
    assert last["interaction"]["pct_points"] == pytest.approx(0.0, abs=1e-9)
    for step in (first, last):
        loo = step["leave_one_out"]
        assert set(loo["saved_pct"]) == set(loo["saved_s"]) == {"estimate", "ci95", "verdict"}
        assert step["interaction"]["pct_points"] == pytest.approx(
            step["saved_pct"]["estimate"] - loo["saved_pct"]["estimate"]
        )
        assert step["name"] in readings[step["name"]]
        # The paired test behind the verdict is stored: the ratio of the two comparisons, on
        # the rounds both have (all clean ones; a busy machine may leave fewer than 3).
        interaction = step["interaction"]
        assert interaction["rounds"] == summary["rounds"] == rounds_of(loo_out)[0]
        assert_verdict_follows_interval(
            interaction["ratio"],
            interaction["ci95"],
            interaction["verdict"],
            1.0,
            interaction["rounds"],
        )
    # Without single_worker, main_thread_aug alone sets the workers to 0: the same configuration
    # as all steps, so single_worker added last changes nothing, and the reading says why.
    assert first["interaction"]["same_config"] and not first["interaction"]["is_last_step"]
    assert "changes nothing" in readings[first["name"]]
    assert "is the last step" in readings[last["name"]]
    # Seconds of adding a step last: the all-but-it variant's paired time minus the final's.
    final_s = summary["total"]["final_s"]
    ratio = first["leave_one_out"]["ratio"]
    assert first["leave_one_out"]["saved_s"]["estimate"] == pytest.approx(final_s / ratio - final_s)
    # Every new job's summary carries each step's accuracy change, paired within rounds (the
    # mean per-round difference in points; added last too), and each variant's `learned`.
    keys = {"estimate_pts", "low_pts", "high_pts", "significant", "verdict", "rounds"}
    variants = {v["name"]: v for v in summary["variants"]}
    for before, step in zip(summary["variants"], summary["steps"], strict=False):
        after = variants[step["variant"]]
        assert set(step["accuracy_change"]) == set(step["leave_one_out"]["accuracy_change"]) == keys
        assert before["rounds"] == after["rounds"]
        differences = [
            100 * (a - b)
            for a, b in zip(after["accuracy"]["values"], before["accuracy"]["values"], strict=True)
        ]
        mean = sum(differences) / len(differences)
        assert step["accuracy_change"]["estimate_pts"] == pytest.approx(mean)
    assert all(v["learned"] == (v["accuracy"]["median"] >= 0.2) for v in summary["variants"])
    report = (loo_out / "report.md").read_text()
    assert "## Order-independent attribution (leave-one-out)" in report
    assert "![leave-one-out](leave-one-out.png)" in report
    assert (loo_out / "leave-one-out.png").read_bytes()[:4] == b"\x89PNG"


def _derived(loo_out, tmp_path, name, change):
    """A copy of the job's records with `change(record)` applied to each, and its plan."""
    out = tmp_path / name
    out.mkdir()
    (out / "plan.json").write_bytes((loo_out / "plan.json").read_bytes())
    records = [change(r) for r in read_jsonl(loo_out / "results.jsonl")]
    lines = [json.dumps(r) for r in records if r is not None]
    (out / "results.jsonl").write_text("\n".join(lines) + "\n")
    return out


def test_compare_a_job_with_itself_finds_no_difference(loo_out):
    result = call_cli(str(loo_out), str(loo_out), "--json", module="lab.compare")
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout)
    assert [row["variant"] for row in comparison["variants"]][:3] == [
        "baseline",
        "+single_worker",
        "+main_thread_aug",
    ]
    # Identical samples: a ratio of exactly 1, inside any interval, whatever the job's noise.
    clean_rounds, _ = rounds_of(loo_out)
    for row in comparison["variants"]:
        ratio = row["b_over_a"]
        assert ratio["ratio"] == pytest.approx(1.0)
        assert row["runs"] == [clean_rounds, clean_rounds]
        assert_verdict_follows_interval(1.0, ratio["ci95"], ratio["verdict"], 1.0, clean_rounds)
        assert ratio["verdict"] != "significant"
    for row in comparison["steps"]:
        assert row["difference_pct_points"] == pytest.approx(0.0, abs=1e-9)
        assert row["difference_verdict"] != "significant"
    assert "unpaired" in comparison["method"]


# Known times for a derived job: each variant's cost, a drift per round shared by every run of
# the round, and a small fixed wobble per run (a ~1% spread, so intervals have a width): the
# verdicts follow from these numbers alone, not from the machine the real job ran on.
KNOWN_COST_S = {"baseline": 10.0, CONTROL_NAME: 10.0, "+single_worker": 9.0, "-single_worker": 7.2}
ROUND_DRIFT = (1.00, 1.04, 0.97, 1.02, 0.99, 1.03)


def _known_seconds(variant: str, round_index: int, main_thread_aug_s: float) -> float:
    cost = KNOWN_COST_S.get(variant, main_thread_aug_s)
    wobble = 1.0 + 0.01 * math.sin(3.0 * round_index + len(variant))
    return cost * ROUND_DRIFT[round_index % len(ROUND_DRIFT)] * wobble


def _main_thread_aug_saving(loo_out, tmp_path, name, main_thread_aug_s):
    """The real job's records and plan with every timed run's time set to a known value
    (`_known_seconds`): +main_thread_aug costs `main_thread_aug_s`, the rest as in
    `KNOWN_COST_S`, so a difference between two such jobs is exactly known."""

    def known(record):
        m = record["measurements"]
        seconds = _known_seconds(record["variant"], record["round"], main_thread_aug_s)
        scale = seconds / m["total_s"]
        for part in ("total_s", "train_s", "eval_s"):
            m[part] *= scale  # the parts stay a split of the total
        return record

    return _derived(loo_out, tmp_path, name, known)


def test_compare_finds_a_variant_made_30_percent_faster(loo_out, tmp_path):
    steady_out = _main_thread_aug_saving(loo_out, tmp_path, "steady", 7.2)
    faster_out = _main_thread_aug_saving(loo_out, tmp_path, "faster", 7.2 * 0.7)
    result = call_cli(str(steady_out), str(faster_out), "--json", module="lab.compare")
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout)
    rows = {row["variant"]: row["b_over_a"] for row in comparison["variants"]}
    # The wobble is the same in both jobs, so the ratio is 0.7 to rounding.
    assert rows["+main_thread_aug"]["ratio"] == pytest.approx(0.7)
    assert rows["+main_thread_aug"]["verdict"] == "significant"
    assert rows["baseline"]["ratio"] == pytest.approx(1.0)
    assert rows["baseline"]["verdict"] == "not significant"
    step = {row["step"]: row for row in comparison["steps"]}["main_thread_aug"]
    assert step["difference_verdict"] == "significant"
    assert step["difference_pct_points"] == pytest.approx(
        step["saved_pct"][1]["estimate"] - step["saved_pct"][0]["estimate"]
    )
    assert step["saved_pct"][0]["estimate"] == pytest.approx(20.0, abs=2.0)  # 9 s -> 7.2 s
    assert step["saved_pct"][1]["estimate"] == pytest.approx(44.0, abs=2.0)  # 9 s -> 5.04 s
    text = call_cli(str(steady_out), str(faster_out), module="lab.compare").stdout
    assert "B/A" in text and "+main_thread_aug" in text and "saved in A" in text


def test_compare_rejects_bad_input_with_one_line(loo_out, tmp_path):
    missing = tmp_path / "missing"
    assert_one_line_error(
        call_cli(str(missing), str(loo_out), module="lab.compare"), "no such folder"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(
        call_cli(str(loo_out), str(empty), module="lab.compare"), "OUT_B", "no results.jsonl"
    )
    shorter = _derived(
        loo_out, tmp_path, "shorter", lambda r: None if r["variant"] == "+main_thread_aug" else r
    )
    assert_one_line_error(
        call_cli(str(loo_out), str(shorter), module="lab.compare"), "jobs of different steps"
    )
    started = _derived(loo_out, tmp_path, "started", lambda r: r)
    plan = json.loads((started / "plan.json").read_text())
    plan["job"]["start"] = ["bn_dedupe"]  # as if `--from`: its baseline is another recipe
    (started / "plan.json").write_text(json.dumps(plan))
    assert_one_line_error(
        call_cli(str(loo_out), str(started), module="lab.compare"),
        "chains started at different points",
        "after `bn_dedupe`",
    )
