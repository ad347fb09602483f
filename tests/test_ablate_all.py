"""`--all` end to end on real data (smoke scale): every output, the attribution arithmetic,
report rebuilding, and surviving an interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, VARIANT_NAMES, assert_one_line_error, read_jsonl, run_lab

VARIANTS = VARIANT_NAMES


def _records(out):
    return read_jsonl(out / "results.jsonl")


@pytest.fixture(scope="module")
def all_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("all") / "out"
    result = run_lab("--all", "--preset", "smoke", "--runs", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_all_runs_every_variant_interleaved_with_a_warmup(all_out):
    records = _records(all_out)
    assert records[0]["warmup"] and records[0]["variant"] == "baseline"
    timed = [r for r in records if not r["warmup"]]
    assert [r["variant"] for r in timed] == VARIANTS * 3  # round-robin, not grouped
    assert [r["run_index"] for r in timed] == [i for i in range(3) for _ in VARIANTS]
    for record in timed:
        m = record["measurements"]
        assert m["worker_launches"] == record["expected"]["worker_launches"]
        assert m["rng_calls"] == record["expected"]["rng_calls"]


def test_summary_savings_add_up(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    assert [v["name"] for v in summary["variants"]] == VARIANTS
    steps = summary["steps"]
    assert [s["name"] for s in steps] == [v[1:] for v in VARIANTS[1:]]
    total = summary["total"]
    assert sum(s["saved_s"]["median"] for s in steps) == pytest.approx(
        total["baseline_s"] - total["final_s"]
    )
    for step in steps:
        low, high = step["saved_s"]["ci95"]
        assert low <= high
        assert step["saved_s"]["verdict"] in ("significant", "not significant")
        assert set(step["counter_deltas"]) >= {
            "worker_launches",
            "rng_calls",
            "data_wait_s",
            "cpu_children_s",
            "cpu_main_s",
            "images_per_s",
        }
    by_name = {s["name"]: s for s in steps}
    assert by_name["bulk_rng"]["counter_deltas"]["rng_calls"] == 6 - 3 * 500 * 2
    assert by_name["main_thread_aug"]["counter_deltas"]["worker_launches"] == -4
    assert by_name["cached_preprocessing"]["one_off_s"] > 0
    assert by_name["bulk_rng"]["article"]["saved_s"] == 7.0
    for variant in summary["variants"]:
        assert variant["counters_match_plan"]
        assert variant["accuracy"]["runs"] == 3


def test_report_and_charts_are_written(all_out):
    report = (all_out / "report.md").read_text()
    for fragment in [
        "| step | time (median) | saved | 95% CI |",
        "+main_thread_aug",
        "356 s",
        "![waterfall](waterfall.png)",
        "## Reading",
        "add up to",
    ]:
        assert fragment in report
    assert (all_out / "waterfall.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (all_out / "waterfall.svg").read_bytes()[:500]


def test_report_rebuilds_from_the_records_alone(all_out, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.jsonl", "profile.jsonl"):
        (copy / name).write_bytes((all_out / name).read_bytes())
    result = run_lab(str(copy), module="lab.report")
    assert result.returncode == 0, result.stderr
    assert json.loads((copy / "summary.json").read_text()) == json.loads(
        (all_out / "summary.json").read_text()
    )
    assert (copy / "report.md").read_text() == (all_out / "report.md").read_text()
    # Timings alone (no profile.jsonl) still make a full report, minus the breakdown.
    (copy / "profile.jsonl").unlink()
    assert run_lab(str(copy), module="lab.report").returncode == 0
    assert "Not profiled" in (copy / "report.md").read_text()


def test_report_of_a_folder_without_results_is_a_clean_error(tmp_path):
    assert_one_line_error(run_lab(str(tmp_path), module="lab.report"), "no such results file")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_all_resumes_without_loss_or_duplicates(how, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.ablate",
            "--all",
            "--preset",
            "smoke",
            "--runs",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 5:
            break
        time.sleep(0.1)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    before = results.read_text().splitlines()
    assert 5 <= len(before) < 15, "interrupt partway through"
    if how == signal.SIGINT:
        assert process.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr
    resumed = run_lab("--resume", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    after = results.read_text().splitlines()
    assert after[: len(before)] == before  # nothing already written was touched
    timed = [json.loads(line) for line in after if not json.loads(line)["warmup"]]
    pairs = [(r["variant"], r["run_index"]) for r in timed]
    assert len(pairs) == len(set(pairs)) == 2 * len(VARIANTS)
    profiled = [
        json.loads(line)["variant"] for line in (out / "profile.jsonl").read_text().splitlines()
    ]
    assert sorted(profiled) == sorted(VARIANTS)  # each variant profiled once, none twice
    assert (out / "report.md").is_file()


def test_resume_refuses_other_code_or_configs(all_out, tmp_path):
    for damage in ("code_hash", "config"):
        out = tmp_path / damage
        out.mkdir()
        (out / "results.jsonl").write_bytes((all_out / "results.jsonl").read_bytes())
        plan = json.loads((all_out / "plan.json").read_text())
        if damage == "code_hash":
            plan["code_hash"] = "0123456789abcdef"
            fragment = "the code changed since the job started"
        else:
            plan["variants"]["+bulk_rng"]["width"] = 99
            fragment = "configs differ from the stored plan"
        (out / "plan.json").write_text(json.dumps(plan))
        assert_one_line_error(run_lab("--resume", str(out)), fragment)


def test_where_the_time_goes_and_the_floor_are_reported(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    for variant in summary["variants"]:
        profile = variant["profile"]
        assert profile["seconds"]["step"] > 0 and profile["profiler_overhead"] is not None
        assert sum(profile["shares"].values()) == pytest.approx(1.0)
        floor = variant["floor"]
        assert floor["floor_s"] == pytest.approx(
            floor["total_flops"] / (floor["peak_tflops"] * 1e12)
        )
        assert 0 < floor["efficiency"] < 1
    for step in summary["steps"]:
        assert step["where"]["came_from"]
    report = (all_out / "report.md").read_text()
    assert "## Where the time goes" in report and "## The floor" in report
    assert "profiler overhead" in report


def _get_json(url, timeout=60.0):
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_tensorboard_serves_every_variant_with_dataloader_time(all_out):
    from lab.tensorboard import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "lab.tensorboard", str(all_out), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        base = f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler"
        deadline = time.monotonic() + 120
        while True:
            runs = _get_json(f"{base}/runs")
            if not runs["loading"] and len(runs["runs"]) == len(VARIANTS):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(1)
        assert runs["runs"] == [
            "00-baseline",
            "01-bn_dedupe",
            "02-smooth_lr",
            "03-cached_preprocessing",
            "04-single_worker",
            "05-bulk_rng",
            "06-main_thread_aug",
        ]
        for run in ("00-baseline", "06-main_thread_aug"):
            (worker,) = _get_json(f"{base}/workers?run={run}&view=Overview")
            (span,) = _get_json(f"{base}/spans?run={run}&worker={worker}")
            overview = _get_json(f"{base}/overview?run={run}&worker={worker}&span={span}")
            parts = {c["name"]: c["value"] for c in overview["performance"][0]["children"]}
            assert parts["DataLoader"] > 0, (run, parts)
        scalars = _get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        assert {"train_loss", "test_accuracy", "epoch_s", "images_per_s"} <= set(
            scalars["00-baseline"]
        )
        images = _get_json(f"http://127.0.0.1:{port}/data/plugin/images/tags")
        assert "waterfall" in images["waterfall"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode is not None
