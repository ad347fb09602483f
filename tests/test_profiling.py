"""Profiled passes, the trace breakdown, the DataLoader events torch-tb-profiler needs, and the
floor."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from types import SimpleNamespace

import pytest
import torch

from lab.engine import peak as peak_module
from lab.engine.peak import measure_peak_tflops
from lab.profiling.passes import DATALOADER_TWIN, breakdown_from_trace, recorded_steps
from lab.records.floor import floor_seconds, vendor_peak_tflops
from tests.conftest import STEP_NAMES, assert_one_line_error, call_cli, read_jsonl


def _event(name, ts, dur, cat="user_annotation"):
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "cat": cat}


def test_breakdown_of_a_crafted_trace(tmp_path):
    events = [
        _event("ProfilerStep#2", 0, 1000),
        _event("lab/data_wait", 0, 100),
        _event("lab/forward", 150, 300),
        _event("lab/backward", 450, 400),
        _event("lab/optimizer", 850, 100),
        _event("lab/h2d", 100, 50),
        _event("ProfilerStep#3", 1000, 500),
        _event("lab/eval", 1000, 500),
    ]
    path = tmp_path / "t.pt.trace.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump({"traceEvents": events}, handle)
    b = breakdown_from_trace(path)
    assert b["train_steps"] == 1
    assert b["step_s"] == pytest.approx(1000e-6)
    assert b["data_s"] == pytest.approx(100e-6)
    assert b["compute_s"] == pytest.approx(800e-6)
    assert b["other_s"] == pytest.approx(100e-6)
    assert b["eval_s"] == pytest.approx(500e-6)
    assert sum(b["shares"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "steps",
    [[], STEP_NAMES],
    ids=["baseline", "final"],
)
def test_profiled_pass_writes_a_trace_with_dataloader_events(steps, all_out):
    """The profiled passes of the suite's end-to-end job (smoke preset, real data)."""
    variant = f"+{steps[-1]}" if steps else "baseline"
    (result,) = [r for r in read_jsonl(all_out / "profile.jsonl") if r["variant"] == variant]
    trace = all_out / "tb" / result["tb_run"] / result["trace"]
    assert trace.name.endswith(".pt.trace.json.gz")
    with gzip.open(trace, "rt") as handle:
        events = [e for e in json.load(handle)["traceEvents"] if e.get("ph") == "X"]
    waits = {(e["ts"], e["dur"]) for e in events if e["name"] == "lab/data_wait"}
    twins = {(e["ts"], e["dur"]) for e in events if e["name"] == DATALOADER_TWIN}
    assert waits and twins == waits and result["dataloader_events_added"] == len(waits)
    assert all(e["cat"] == "cpu_op" for e in events if e["name"] == DATALOADER_TWIN)
    names = {e["name"] for e in events}
    assert {"lab/forward", "lab/backward", "lab/optimizer", "lab/h2d", "lab/eval"} <= names
    assert ("lab/preprocess" in names) == bool(steps)
    b = result["breakdown"]
    # 500 images / batch 128 = 4 steps a pass: 1 start + 1 unprofiled + 1 warm-up + 1 recorded.
    assert b["train_steps"] == result["recorded_steps"] == 1
    assert b["data_s"] > 0 and b["compute_s"] > 0
    assert result["profiled_steps_s"] > 0 and result["unprofiled_steps_s"] > 0


def test_floor_of_the_article_is_about_39_seconds():
    result = call_cli(
        "--plan", "--json", "--preset", "dawnbench", "--device", "cpu", "--peak-tflops", "125"
    )
    assert result.returncode == 0, result.stderr
    (baseline,) = json.loads(result.stdout)["variants"]
    assert baseline["total_flops"] == 2_756_474_880 * 50_000 * 35
    assert baseline["floor_s"] == pytest.approx(38.6, abs=0.1)  # the article's "40 seconds"


def test_vendor_peaks_and_floor_seconds():
    assert vendor_peak_tflops("Tesla V100-SXM2-16GB") == 125.0
    assert vendor_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert vendor_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert vendor_peak_tflops("NVIDIA H200") == 989.0
    assert vendor_peak_tflops("cpu (AMD EPYC)") is None
    assert floor_seconds(125e12, 125.0) == pytest.approx(1.0)


def test_measured_peak_is_the_fastest_of_the_timed_multiplies(monkeypatch):
    """2 n^3 FLOPs over the best of the repeats, the warm-up multiply untimed: a clock that
    reads 3 ms, 1 ms and 2 ms for the three repeats gives 2 * 256^3 / 1 ms."""
    readings = iter([10.0, 10.003, 20.0, 20.001, 30.0, 30.002])
    monkeypatch.setattr(peak_module, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    peak = measure_peak_tflops(torch.device("cpu"), torch.float32, size=256, repeats=3)
    assert peak == pytest.approx(2 * 256**3 / 0.001 / 1e12)
    assert next(readings, None) is None  # every repeat read the clock twice, the warm-up never


def test_bad_peak_and_missing_tb_are_one_line_errors(tmp_path):
    assert_one_line_error(call_cli("--plan", "--peak-tflops", "0"), "--peak-tflops 0: must be > 0")
    assert_one_line_error(call_cli(str(tmp_path), module="lab.tensorboard"), "no tb/ folder")


def test_no_profile_skips_the_passes(loo_out):
    """The leave-one-out job of the suite ran with --no-profile."""
    out = loo_out
    assert not (out / "profile.jsonl").exists()
    assert not list((out / "tb").rglob("*.pt.trace.json.gz"))
    assert "Not profiled" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variants"][0]["floor"]["floor_s"] > 0


def test_recorded_steps_fit_the_pass():
    assert recorded_steps(32) == 8  # the cpu preset: 4,000 images / 128
    assert recorded_steps(391) == 8  # dawnbench
    assert recorded_steps(4) == 1 and recorded_steps(2) == 1


# ----------------------------------------------------------------------------- attribution rules


def _pass(index, data, compute, other, steps=2, added=0.0, operators=None):
    """A crafted profile record: seconds over `steps` recorded steps per category."""
    return {
        "variant": "v",
        "tb_run": "00-v",
        "trace": f"lab.{index}.pt.trace.json.gz",
        "pass": index,
        "profiled_steps_s": data + compute + other + added,
        "unprofiled_steps_s": data + compute + other,
        "profiler_overhead": added / (data + compute + other),
        "breakdown": {
            "train_steps": steps,
            "step_s": data + compute + other,
            "data_s": data,
            "compute_s": compute,
            "other_s": other,
            "h2d_s": 0.0,
            "eval_s": 0.0,
            "preprocess_s": 0.0,
            "shares": {},
            "phases_s": {
                "data_wait": data,
                "h2d": 0.0,
                "forward": compute,
                "backward": 0.0,
                "optimizer": 0.0,
            },
        },
        "operators": operators or [],
        "cpu": None,
    }


def test_a_category_is_named_only_outside_the_spread_of_the_passes():
    from lab.analysis.summary import attribute, passes_summary

    before = passes_summary([_pass(0, 1.0, 4.0, 0.2), _pass(1, 1.1, 4.4, 0.2)])
    # compute falls in every pass; data falls too, but its ranges overlap.
    clear = passes_summary([_pass(0, 1.05, 3.0, 0.2), _pass(1, 0.95, 3.2, 0.2)])
    result = attribute(before, clear)
    assert result["came_from"] == "compute" and result["passes"] == 2
    assert result["reason"] == "beyond_spread"
    # The median falls by 0.3 s a step, but one pass after is above one pass before.
    noisy = passes_summary([_pass(0, 1.0, 3.0, 0.2), _pass(1, 1.0, 4.2, 0.2)])
    unclear = attribute(before, noisy)
    assert (unclear["came_from"], unclear["reason"]) == ("unclear", "within_spread")
    assert before["seconds"]["compute"] == pytest.approx(4.2)  # the median of the passes
    assert sum(before["shares"].values()) == pytest.approx(1.0)


def test_one_pass_names_a_category_only_beyond_the_profilers_own_added_time():
    from lab.analysis.summary import attribute, passes_summary

    before = passes_summary([_pass(0, 0.0, 4.0, 0.0, steps=2, added=0.4)])
    # compute falls 0.5 s a step; the profiler added 0.2 + 0.1 s a step to the two passes.
    big = passes_summary([_pass(0, 0.0, 3.0, 0.0, steps=2, added=0.2)])
    result = attribute(before, big)
    assert (result["came_from"], result["reason"]) == ("compute", "beyond_profiler")
    assert result["threshold_per_step_s"] == pytest.approx(0.3)
    small = passes_summary([_pass(0, 0.0, 3.6, 0.0, steps=2, added=0.2)])  # falls 0.2 a step
    unclear = attribute(before, small)
    assert (unclear["came_from"], unclear["reason"]) == ("unclear", "one_pass")


def test_op_diff_is_per_recorded_step_and_marks_time_changes_beyond_the_spread():
    from lab.analysis.summary import op_diff

    def ops(bn_calls, bn_s, conv_calls, conv_s):
        return [
            {"name": "aten::batch_norm", "calls": bn_calls, "self_s": bn_s},
            {"name": "aten::convolution", "calls": conv_calls, "self_s": conv_s},
        ]

    # Before: 4 recorded steps; after: 2. Calls per step: 17 -> 16.
    before = [_pass(i, 0, 1, 0, steps=4, operators=ops(68, 0.4, 40, 2.0 + i)) for i in (0, 1)]
    after = [_pass(i, 0, 1, 0, steps=2, operators=ops(32, 0.1, 20, 0.5 + i)) for i in (0, 1)]
    rows = {r["name"]: r for r in op_diff(before, after)}
    bn = rows["aten::batch_norm"]
    assert (bn["calls_before"], bn["calls_after"], bn["calls_change"]) == (17, 16, -1)
    assert bn["self_s_before"] == pytest.approx(0.1) and bn["self_s_after"] == pytest.approx(0.05)
    assert bn["beyond_spread"] is True
    conv = rows["aten::convolution"]
    assert (conv["calls_before"], conv["calls_change"]) == (10, 0)
    # conv per step: before 0.5 / 0.75 s, after 0.25 / 0.75 s: the ranges overlap.
    assert conv["beyond_spread"] is False
    assert op_diff(before[:1], after[:1])[0]["beyond_spread"] is None  # one pass: no spread
    assert op_diff([_pass(0, 0, 1, 0)], after) == []  # records without operators


def test_profiled_passes_are_interleaved_and_reproducible():
    from lab.engine.job import Job

    job = Job(
        preset="smoke",
        steps=("bn_dedupe", "smooth_lr"),
        rounds=1,
        seed=0,
        order_seed=7,
        device="cpu",
        profile_passes=3,
    )
    targets = job.cumulative()
    order = job.profile_order(targets)
    assert [p for p, _ in order] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for p in range(3):
        assert sorted(v.name for q, v in order if q == p) == sorted(v.name for v in targets)
    assert order == job.profile_order(targets)
    assert len({tuple(v.name for q, v in order if q == p) for p in range(3)}) > 1


def test_cores_used_from_two_snapshots():
    from lab.profiling.cpuload import Snapshot, cores_used, worker_cpu_seconds

    start = Snapshot(wall=10.0, main_cpu_s=5.0, workers_cpu_s={11: 1.0, 12: 2.0})
    end = Snapshot(wall=12.0, main_cpu_s=6.5, workers_cpu_s={11: 2.0, 12: 2.5, 13: 0.5})
    cpu = cores_used(start, end)
    assert cpu["main_cores"] == pytest.approx(0.75)
    assert cpu["workers_cores"] == pytest.approx((1.0 + 0.5 + 0.5) / 2)
    assert cpu["worker_processes"] == 3
    assert cores_used(Snapshot(0.0, 0.0), Snapshot(1.0, 0.5))["workers_cores"] is None
    assert worker_cpu_seconds(os.getpid()) == {}  # no forked children here: none counted


def test_rng_and_contention_readings_come_from_the_numbers():
    from lab.records.summary import CpuUse
    from lab.records.summary_step import OperatorChange, StepSummary
    from lab.render.report import contention_reading, rng_note

    def step(*operators: OperatorChange) -> StepSummary:
        # rng_note reads only these two fields; the rest of a step does not matter here.
        blank = dict.fromkeys(StepSummary.__dataclass_fields__)
        deltas = {"rng_calls": -2994}
        return StepSummary(**{**blank, "counter_deltas": deltas, "op_diff": list(operators)})

    assert "worker processes (not traced)" in rng_note(step())
    randint = OperatorChange(
        name="aten::randint",
        calls_before=300.0,
        calls_after=44.0,
        calls_change=-256.0,
        self_s_before=0.0,
        self_s_after=0.0,
        self_s_change=0.0,
        beyond_spread=None,
    )
    assert rng_note(step(randint)) == (
        "RNG operator calls per step in the traced process: `aten::randint` -256."
    )
    cpu = CpuUse(
        worker_processes=16,
        workers_cores=1.1,
        main_cores=0.8,
        machine_cores=2,
        usable_cores=2,
        wall_s=1.0,
    )
    one = dataclasses.replace(cpu, worker_processes=1, workers_cores=0.3, main_cores=1.5)
    reading = contention_reading("single_worker", cpu, one)
    assert "16 worker processes used 1.10 cores" in reading and "2-core machine" in reading
    assert "1 worker process used 0.30 cores, the main process 1.50" in reading
    assert contention_reading("bn_dedupe", cpu, cpu) == ""


# ----------------------------------------------------------------------------- worker rows


def test_profiled_pass_shows_each_dataloader_worker_in_the_trace(real_cifar, tmp_path):
    """A real profiled pass at the smoke scale (2 train and 2 test workers, per-sample PIL
    pipeline): every worker process is a row of its own in the trace, with its start-up and
    each batch's fetch, augment (transform) and collate, on the trace's clock: the test
    loader's workers start and finish inside the profiler's own `lab/eval` range. The main
    process's breakdown is the same without the added rows."""
    from lab.profiling.passes import profile_in_subprocess
    from lab.profiling.worker_rows import WORKER_CATEGORY, WORKER_EVENT_NAMES
    from lab.recipe.presets import get_preset
    from lab.recipe.variant import Variant
    from lab.train.data import subset

    config = get_preset("smoke").config
    assert config.train_workers >= 2 and config.test_workers >= 2
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    result = profile_in_subprocess(
        Variant("baseline", (), config), data, torch.device("cpu"), 0, tmp_path / "run"
    )
    with gzip.open(tmp_path / "run" / result["trace"], "rt") as handle:
        trace = json.load(handle)
    events = trace["traceEvents"]
    rows = [e for e in events if e.get("ph") == "X" and e.get("name") in WORKER_EVENT_NAMES]
    (main_pid,) = {e["pid"] for e in events if e.get("name", "").startswith("ProfilerStep#")}
    pids = {e["pid"] for e in rows}
    assert main_pid not in pids and len(pids) >= 4  # a train pass's 2 workers, the test's 2
    assert result["worker_rows"] == {"processes": len(pids), "events": len(rows)}
    assert all(e["cat"] == WORKER_CATEGORY and e["tid"] == e["pid"] for e in rows)
    assert all(e["dur"] > 0 for e in rows if e["name"] != "worker start")
    by_loader = {}
    for event in rows:
        by_loader.setdefault(event["args"]["loader"], []).append(event)
    train_names = {e["name"] for e in by_loader["train"]}
    assert train_names == {"worker start", "fetch", "augment", "collate"}
    assert {e["name"] for e in by_loader["test"]} == {
        "worker start",
        "fetch",
        "transform",
        "collate",
    }
    # Each worker's batches: fetch, augment, collate back to back, after its start-up.
    for pid in pids:
        own = sorted((e for e in rows if e["pid"] == pid), key=lambda e: e["ts"])
        assert own[0]["name"] == "worker start" and own[0]["dur"] > 0
        for before, after in zip(own, own[1:], strict=False):
            assert after["ts"] >= before["ts"] + before["dur"] - 1  # 1 us: float rounding
    (evaluation,) = [e for e in events if e.get("name") == "lab/eval" and e.get("ph") == "X"]
    end = evaluation["ts"] + evaluation["dur"]
    assert all(evaluation["ts"] <= e["ts"] and e["ts"] + e["dur"] <= end for e in by_loader["test"])
    # Every train batch a worker built ended before the pass's evaluation began.
    assert all(e["ts"] + e["dur"] <= evaluation["ts"] for e in by_loader["train"])
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    assert {names[pid] for pid in pids} >= {
        "DataLoader worker 0 (train pass 1)",
        "DataLoader worker 1 (train pass 1)",
        "DataLoader worker 0 (test pass 1)",
        "DataLoader worker 1 (test pass 1)",
    }
    without = {**trace, "traceEvents": [e for e in events if e.get("pid") not in pids]}
    assert breakdown_from_trace(tmp_path / "unused", trace) == breakdown_from_trace(
        tmp_path / "unused", without
    )
    assert (
        result["breakdown"]["trace_phases_s"] == breakdown_from_trace(tmp_path, trace)["phases_s"]
    )
    # torch-tb-profiler: the Overview's step breakdown and the Operator view are the main
    # process's alone (the workers' category is kept for the trace view, counted in neither).
    from torch_tb_profiler.profiler.data import RunProfileData

    def tensorboard(content):
        profile = RunProfileData.from_json("lab", "1", content)
        operators = {op.name for tree in profile.tid2tree.values() for op in tree.children}
        return profile.avg_costs.costs, operators

    costs, operators = tensorboard(trace)
    assert (costs, operators) == tensorboard(without)
    assert not operators & set(WORKER_EVENT_NAMES)
