"""`python -m lab.report OUT`: rebuild summary.json, waterfall.png/.svg, report.md and the
TensorBoard scalars from the records alone (OUT/results.jsonl, and OUT/profile.jsonl when the
job was profiled)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.records import read_records
from lab.summary import build_summary
from lab.tblogs import write_tensorboard_logs
from lab.waterfall import draw_waterfall

COUNTER_FORMATS = {
    "worker_launches": ("worker launches", "{:+,.0f}"),
    "rng_calls": ("RNG calls", "{:+,.0f}"),
    "data_wait_s": ("data wait", "{:+.2f} s"),
    "cpu_children_s": ("child CPU", "{:+.2f} s"),
    "cpu_main_s": ("main CPU", "{:+.2f} s"),
    "images_per_s": ("images/s", "{:+.0f}"),
    "params": ("params", "{:+,.0f}"),
}


def _ci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _counters_changed(step: dict[str, Any], before: dict[str, Any]) -> str:
    """Counters that moved by more than 2% (exact counters: any change)."""
    parts = []
    for key, (label, fmt) in COUNTER_FORMATS.items():
        delta = step["counter_deltas"][key]
        reference = abs(before["counters"][key]) or 1.0
        exact = key in ("worker_launches", "rng_calls", "params")
        if (exact and delta != 0) or (not exact and abs(delta) / reference > 0.02):
            parts.append(f"{label} {fmt.format(delta)}")
    return "; ".join(parts) or "none"


def _accuracy(variant: dict[str, Any]) -> str:
    acc = variant["accuracy"]
    return f"{acc['median']:.1%} ({acc['reached']}/{acc['runs']} reached {acc['target']:.0%})"


def _table(summary: dict[str, Any]) -> list[str]:
    variants, steps = summary["variants"], summary["steps"]
    lines = [
        "| step | time (median) | saved | 95% CI | counters changed | accuracy | article (V100) |",
        "| --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    base = variants[0]
    lines.append(
        f"| baseline | {base['timing']['total_s']['median']:.2f} s | | | | "
        f"{_accuracy(base)} | 356 s |"
    )
    for before, variant, step in zip(variants, variants[1:], steps, strict=False):
        saved = step["saved_s"]
        article = step["article"]
        claim = "-" if article["saved_s"] is None else f"-{article['saved_s']:g} s"
        if article["shared_with"]:
            claim += f" (with {', '.join(article['shared_with'])})"
        flag = " ⚑" if step["flagged"] else ""
        verdict = "" if saved["verdict"] == "significant" else f" ({saved['verdict']})"
        lines.append(
            f"| +{step['name']}{flag} | {variant['timing']['total_s']['median']:.2f} s | "
            f"{saved['median']:+.2f} s{verdict} | {_ci(saved['ci95'])} | "
            f"{_counters_changed(step, before)} | {_accuracy(variant)} | {claim} |"
        )
    return lines


def _reading(summary: dict[str, Any]) -> list[str]:
    """A plain reading generated from the numbers."""
    total, steps = summary["total"], summary["steps"]
    if not steps:
        v = summary["variants"][0]
        return [
            f"- One variant: {v['timing']['total_s']['median']:.2f} s median over "
            f"{v['runs']} run(s), {_accuracy(v)}."
        ]
    lines = [
        f"- Baseline {total['baseline_s']:.2f} s -> final {total['final_s']:.2f} s: "
        f"{total['saved_s']:.2f} s saved ({total['saved_s'] / total['baseline_s']:.1%}); "
        f"the article saved 59 s of 356 s (16.6%) on a V100.",
        f"- The steps' savings add up to {total['sum_of_step_savings_s']:.2f} s = baseline - final "
        "(differences of medians telescope).",
    ]
    significant = [s for s in steps if s["saved_s"]["verdict"] == "significant"]
    if significant:
        biggest = max(significant, key=lambda s: s["saved_s"]["median"])
        lines.append(
            f"- Largest significant change: {biggest['name']} "
            f"({biggest['saved_s']['median']:+.2f} s saved)."
        )
    runs = summary["variants"][0]["runs"]
    if runs < 5:
        lines.append(
            f"- Only {runs} runs per variant: percentile-bootstrap intervals from so few runs are "
            "coarse and tend to be too narrow, so a 'significant' difference of a few percent "
            "can still be noise (a step that moves no mechanism counter, like smooth_lr, is the "
            "check). Use `--runs 5` or more before trusting small differences."
        )
    quiet = [s["name"] for s in steps if s["saved_s"]["verdict"] != "significant"]
    if quiet:
        lines.append(f"- Not distinguishable from run-to-run noise here: {', '.join(quiet)}.")
    slower = [
        s["name"]
        for s in steps
        if s["saved_s"]["verdict"] == "significant" and s["saved_s"]["median"] < 0
    ]
    if slower:
        lines.append(f"- Significantly slower on this machine: {', '.join(slower)}.")
    flagged = [s for s in steps if s["flagged"]]
    for step in flagged:
        broken = [
            f"{c['counter']} expected {c['expected']} ({c['before']:.3g} -> {c['after']:.3g})"
            for c in step["expectations"]
            if not c["holds"]
        ]
        lines.append(
            f"- ⚑ {step['name']}: counters did not move as its docstring says: "
            f"{'; '.join(broken) or 'measured counters differ from the plan'}."
        )
    if total["one_off_preprocessing_s"]:
        lines.append(
            f"- One-off preprocessing costs {total['one_off_preprocessing_s']:.2f} s before "
            "training, outside the timed region (as in the article), shown as its own bar."
        )
    return lines


def _where_table(summary: dict[str, Any]) -> list[str]:
    """Where the profiled epoch's step time went, per variant, and how each step moved it."""
    variants = [v for v in summary["variants"] if "profile" in v]
    if not variants:
        return ["Not profiled (`--no-profile`)."]
    lines = [
        "| variant | recorded training steps | data | compute | other | profiler overhead "
        "| trace (tb/) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in variants:
        p = v["profile"]
        overhead = "n/a" if p["profiler_overhead"] is None else f"{p['profiler_overhead']:+.0%}"
        cells = " | ".join(
            f"{p['seconds'][c]:.2f} s ({p['shares'][c]:.0%})" for c in ("data", "compute", "other")
        )
        lines.append(
            f"| {v['name']} | {p['seconds']['step']:.2f} s | {cells} | {overhead} "
            f"| `{p['tb_run']}` |"
        )
    lines += [
        "",
        "| step | data | compute | other | saving came from |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for step in summary["steps"]:
        where = step.get("where")
        if not where:
            continue
        cells = " | ".join(
            f"{where['seconds_change'][c]:+.2f} s ({where['shares'][c][0]:.0%} -> "
            f"{where['shares'][c][1]:.0%})"
            for c in ("data", "compute", "other")
        )
        lines.append(f"| {step['name']} | {cells} | {where['came_from']} |")
    return lines


def _floor_lines(summary: dict[str, Any]) -> list[str]:
    floor = summary["variants"][0]["floor"]
    vendor = floor["vendor_peak_tflops"]
    lines = [
        f"Peak used: {floor['peak_tflops']:.3g} TFLOP/s ({floor['peak_source']}); measured "
        f"matmul peak {floor['measured_peak_tflops']:.3g} TFLOP/s in {floor['peak_dtype']}"
        + (
            f"; vendor figure {vendor:g} TFLOP/s"
            if vendor
            else "; no vendor figure for this device"
        )
        + ". Minimum time = FLOPs per image (forward+backward, `torch.utils.flop_counter`) x "
        "training images x epochs / peak.",
        "",
        "| variant | FLOPs/image | training FLOPs | floor | measured | efficiency |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in summary["variants"]:
        f = v["floor"]
        lines.append(
            f"| {v['name']} | {f['flops_per_image']:.3g} | {f['total_flops']:.3g} | "
            f"{f['floor_s']:.2f} s | {v['timing']['total_s']['median']:.2f} s | "
            f"{f['efficiency']:.1%} |"
        )
    return lines


def render_report(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    lines = [
        f"# Ablation report: preset `{meta.get('preset')}`",
        "",
        "Generated by `python -m lab.report` from `results.jsonl`; every number below is measured.",
        "",
        "## What was run",
        "",
        f"- Command: `{meta.get('command')}`",
        f"- Device: {meta.get('device_name')} ({meta.get('cpu_cores')} cores)",
        f"- Versions: lab {meta.get('lab_version')}, torch {meta.get('torch_version')}, "
        f"Python {meta.get('python_version')}; git {meta.get('git_revision')}, "
        f"code {meta.get('code_hash')}",
        f"- Dates: {summary['first_run_date']} to {summary['last_run_date']}; "
        f"{summary['variants'][0]['runs']} timed runs per variant, interleaved round-robin, "
        f"{summary['warmup_runs']} warm-up run(s) discarded",
        "- Time = training + per-epoch test evaluation (DAWNBench's timed region); decoding and "
        "one-off preprocessing are outside it and reported apart.",
        "",
        "## Results",
        "",
        *_table(summary),
        "",
        "Saved = median(previous variant) - median(this variant); 95% CI by bootstrap "
        "(scipy, percentile, 9,999 resamples); ⚑ = counters did not move as the step says.",
        "",
        "![waterfall](waterfall.png)",
        "",
        "## Where the time goes",
        "",
        "From one profiled pass per variant, apart from the timed runs: the recorded training "
        "steps of a pass in steady state (data = waiting for the next batch, compute = forward + "
        "backward + optimiser, other = the rest: host-to-device copy, Python); profiler overhead "
        "= those steps against the same number of unprofiled steps of the same pass. Open the "
        "traces with `python -m lab.tensorboard <out>`.",
        "",
        *_where_table(summary),
        "",
        "## The floor",
        "",
        *_floor_lines(summary),
        "",
        "## Reading",
        "",
        *_reading(summary),
        "",
    ]
    return "\n".join(lines)


def write_report(out: Path) -> dict[str, Any]:
    """summary.json, waterfall.png/.svg and report.md in `out`, from its results.jsonl."""
    records = read_records(out / "results.jsonl")
    if not any(not r["warmup"] for r in records):
        raise LabError(f"{out / 'results.jsonl'}: no timed runs to report")
    profile_path = out / "profile.jsonl"
    profiles = read_records(profile_path) if profile_path.exists() else []
    summary = build_summary(records, profiles)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    draw_waterfall(summary, out)
    (out / "report.md").write_text(render_report(summary))
    write_tensorboard_logs(out, summary, records)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report", description=__doc__)
    parser.add_argument("out", help="an output folder of python -m lab.ablate")
    args = parser.parse_args(argv)
    try:
        write_report(Path(args.out))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
