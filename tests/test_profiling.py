"""Profiled passes, the trace breakdown, the DataLoader events torch-tb-profiler needs, and the
floor."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from lab.data import subset
from lab.floor import floor_seconds, measure_peak_tflops, vendor_peak_tflops
from lab.presets import PRESETS
from lab.profiling import (
    DATALOADER_TWIN,
    breakdown_from_trace,
    profile_in_subprocess,
    recorded_steps,
)
from lab.registry import Variant, cumulative_variants, get_steps
from tests.conftest import STEP_NAMES, assert_one_line_error, run_lab


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
def test_profiled_pass_writes_a_trace_with_dataloader_events(steps, real_cifar, tmp_path):
    base = PRESETS["smoke"].config
    variant: Variant = cumulative_variants(base, get_steps(steps) if steps else [])[-1]
    data = subset(real_cifar, base.train_images, base.test_images, base.subset_seed)
    result = profile_in_subprocess(variant, data, torch.device("cpu"), seed=0, run_dir=tmp_path)
    trace = tmp_path / result["trace"]
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
    result = run_lab(
        "--plan", "--json", "--preset", "dawnbench", "--device", "cpu", "--peak-tflops", "125"
    )
    assert result.returncode == 0, result.stderr
    (baseline,) = json.loads(result.stdout)["variants"]
    assert baseline["total_flops"] == 2_756_474_880 * 50_000 * 35
    assert baseline["floor_s"] == pytest.approx(38.6, abs=0.1)  # the article's "40 seconds"


def test_vendor_peaks_and_measured_peak():
    assert vendor_peak_tflops("Tesla V100-SXM2-16GB") == 125.0
    assert vendor_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert vendor_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert vendor_peak_tflops("cpu (AMD EPYC)") is None
    assert measure_peak_tflops(torch.device("cpu"), torch.float32, size=256, repeats=2) > 0
    assert floor_seconds(125e12, 125.0) == pytest.approx(1.0)


def test_bad_peak_and_missing_tb_are_one_line_errors(tmp_path):
    assert_one_line_error(run_lab("--plan", "--peak-tflops", "0"), "--peak-tflops 0: must be > 0")
    assert_one_line_error(run_lab(str(tmp_path), module="lab.tensorboard"), "no tb/ folder")


def test_no_profile_skips_the_passes(tmp_path):
    out = tmp_path / "out"
    result = run_lab(
        "--steps",
        "bulk_rng",
        "--preset",
        "smoke",
        "--runs",
        "1",
        "--no-warmup",
        "--no-profile",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert not (out / "profile.jsonl").exists()
    assert not list((out / "tb").rglob("*.pt.trace.json.gz"))
    assert "Not profiled" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variants"][0]["floor"]["floor_s"] > 0


def test_recorded_steps_fit_the_pass():
    assert recorded_steps(32) == 8  # the cpu preset: 4,000 images / 128
    assert recorded_steps(391) == 8  # dawnbench
    assert recorded_steps(4) == 1 and recorded_steps(2) == 1
