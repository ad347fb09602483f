"""Two jobs side by side, as data: per variant the time ratio B/A, per step the saving in each
and their difference (unpaired across jobs; docs/statistics.md). Rendered by
`lab.render.compare`, run by `python -m lab.compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lab.analysis.stats import Ratio, unpaired_log_shift, unpaired_ratio
from lab.analysis.summary import build_summary, chain_variants, paired_logs
from lab.errors import LabError
from lab.records import outputs
from lab.records.jsonl import read_records
from lab.records.plan import read_plan
from lab.records.summary import Summary
from lab.records.typed import to_jsonable

COMPARE_SCHEMA_VERSION = 1


def load_summary(out: Path, flag: str) -> Summary:
    if not out.is_dir():
        raise LabError(f"{flag} {out}: no such folder")
    if not (out / outputs.RESULTS).is_file():
        raise LabError(f"{flag} {out}: no {outputs.RESULTS} (not a lab output folder)")
    records = read_records(out / outputs.RESULTS)
    if not any(not r["warmup"] for r in records):
        raise LabError(f"{flag} {out}: no timed runs")
    if not (out / outputs.PLAN).is_file():
        raise LabError(f"{flag} {out}: no {outputs.PLAN} (not a lab output folder)")
    return build_summary(records, read_plan(out / outputs.PLAN))


def _ratio_row(ratio: Ratio) -> dict[str, Any]:
    return {
        "ratio": ratio.ratio,
        "ci95": None if ratio.ci95 is None else list(ratio.ci95),
        "verdict": ratio.verdict,
    }


def _variant_rows(a: Summary, b: Summary) -> list[dict[str, Any]]:
    by_name = {v.name: v for v in b.variants}
    rows = []
    for variant in a.variants:
        other = by_name.get(variant.name)
        if other is None:
            continue
        times_a = variant.timing.total_s.values
        times_b = other.timing.total_s.values
        rows.append(
            {
                "variant": variant.name,
                "median_s": [float(np.median(times_a)), float(np.median(times_b))],
                "runs": [len(times_a), len(times_b)],
                "b_over_a": _ratio_row(unpaired_ratio(times_a, times_b)),
            }
        )
    return rows


def _step_rows(a: Summary, b: Summary) -> list[dict[str, Any]]:
    rows = []
    chains = chain_variants(a), chain_variants(b)
    for index, (step_a, step_b) in enumerate(zip(a.steps, b.steps, strict=True)):
        logs_a = list(paired_logs(chains[0][index], chains[0][index + 1]).values())
        logs_b = list(paired_logs(chains[1][index], chains[1][index + 1]).values())
        # exp(mean log-ratio B - mean log-ratio A): the step's time ratio in B over that in A.
        shift = unpaired_log_shift(logs_a, logs_b)
        rows.append(
            {
                "step": step_a.name,
                "saved_pct": to_jsonable([step_a.saved_pct, step_b.saved_pct]),
                "saved_s": to_jsonable([step_a.saved_s, step_b.saved_s]),
                "difference_pct_points": step_b.saved_pct.estimate - step_a.saved_pct.estimate,
                "difference_verdict": shift.verdict,
            }
        )
    return rows


def compare(out_a: Path, out_b: Path) -> dict[str, Any]:
    a, b = load_summary(out_a, "OUT_A"), load_summary(out_b, "OUT_B")
    steps_a, steps_b = [s.name for s in a.steps], [s.name for s in b.steps]
    if steps_a != steps_b:
        raise LabError(
            f"{out_a} and {out_b}: jobs of different steps ({','.join(steps_a) or 'baseline'} "
            f"against {','.join(steps_b) or 'baseline'}); compare jobs of the same steps"
        )
    if (a.start or []) != (b.start or []):
        raise LabError(
            f"{out_a} and {out_b}: chains started at different points "
            f"(after {_start_name(a)} against after {_start_name(b)}: `--from`), so their "
            "baselines are different recipes; compare jobs started at the same step"
        )
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "a": {"out": str(out_a), **_describe(a)},
        "b": {"out": str(out_b), **_describe(b)},
        "method": "unpaired across jobs: Welch t intervals on log times (variants) and on the "
        "jobs' per-round log-ratios (steps), 95%",
        "variants": _variant_rows(a, b),
        "steps": _step_rows(a, b),
    }


def _start_name(summary: Summary) -> str:
    return f"`{summary.start[-1]}`" if summary.start else "nothing (the preset's baseline)"


def _describe(summary: Summary) -> dict[str, Any]:
    meta = summary.meta_or_empty()
    return {
        "start": summary.start or [],
        "device_name": meta.device_name,
        "preset": meta.preset,
        "git_revision": meta.git_revision,
        "rounds": summary.rounds,
        "dates": [summary.first_run_date, summary.last_run_date],
        "min_detectable_pct": summary.power.min_detectable_pct,
    }
