"""`python -m lab.compare OUT_A OUT_B`: two result sets side by side (this machine against
another, before and after a code change, a CPU against a GPU).

Per variant: the time ratio B/A (geometric means of the runs) with a 95% interval. Per step: its
saving in A and in B, and whether they differ. Runs of two jobs share no rounds, so these
comparisons are *unpaired* (Welch t intervals on log times, or on the jobs' per-round
log-ratios for a step's saving), and they carry any drift between the two jobs: wider than a
job's own paired intervals, and "not significant" wherever the data do not show a difference.
Everything is computed from the two folders' records alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lab import outputs
from lab.errors import LabError
from lab.records import read_records
from lab.stats import SIGNIFICANT, Ratio, unpaired_log_shift, unpaired_ratio
from lab.summary import build_summary, paired_logs

COMPARE_SCHEMA_VERSION = 1


def load_summary(out: Path, flag: str) -> dict[str, Any]:
    if not out.is_dir():
        raise LabError(f"{flag} {out}: no such folder")
    if not (out / outputs.RESULTS).is_file():
        raise LabError(f"{flag} {out}: no {outputs.RESULTS} (not a lab output folder)")
    records = read_records(out / outputs.RESULTS)
    if not any(not r["warmup"] for r in records):
        raise LabError(f"{flag} {out}: no timed runs")
    return build_summary(records)


def _ratio_row(ratio: Ratio) -> dict[str, Any]:
    return {
        "ratio": ratio.ratio,
        "ci95": None if ratio.ci95 is None else list(ratio.ci95),
        "verdict": ratio.verdict,
    }


def _variant_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    by_name = {v["name"]: v for v in b["variants"]}
    rows = []
    for variant in a["variants"]:
        other = by_name.get(variant["name"])
        if other is None:
            continue
        times_a = variant["timing"]["total_s"]["values"]
        times_b = other["timing"]["total_s"]["values"]
        rows.append(
            {
                "variant": variant["name"],
                "median_s": [float(np.median(times_a)), float(np.median(times_b))],
                "runs": [len(times_a), len(times_b)],
                "b_over_a": _ratio_row(unpaired_ratio(times_a, times_b)),
            }
        )
    return rows


def _chain(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in summary["variants"] if v["role"] in ("baseline", "step")]


def _step_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    chains = _chain(a), _chain(b)
    for index, (step_a, step_b) in enumerate(zip(a["steps"], b["steps"], strict=True)):
        logs_a = list(paired_logs(chains[0][index], chains[0][index + 1]).values())
        logs_b = list(paired_logs(chains[1][index], chains[1][index + 1]).values())
        # exp(mean log-ratio B - mean log-ratio A): the step's time ratio in B over that in A.
        shift = unpaired_log_shift(logs_a, logs_b)
        rows.append(
            {
                "step": step_a["name"],
                "saved_pct": [step_a["saved_pct"], step_b["saved_pct"]],
                "saved_s": [step_a["saved_s"], step_b["saved_s"]],
                "difference_pct_points": step_b["saved_pct"]["median"]
                - step_a["saved_pct"]["median"],
                "difference_verdict": shift.verdict,
            }
        )
    return rows


def compare(out_a: Path, out_b: Path) -> dict[str, Any]:
    a, b = load_summary(out_a, "OUT_A"), load_summary(out_b, "OUT_B")
    steps_a, steps_b = [s["name"] for s in a["steps"]], [s["name"] for s in b["steps"]]
    if steps_a != steps_b:
        raise LabError(
            f"{out_a} and {out_b}: jobs of different steps ({','.join(steps_a) or 'baseline'} "
            f"against {','.join(steps_b) or 'baseline'}); compare jobs of the same steps"
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


def _describe(summary: dict[str, Any]) -> dict[str, Any]:
    meta = summary["meta"]
    return {
        "device_name": meta.get("device_name"),
        "preset": meta.get("preset"),
        "git_revision": meta.get("git_revision"),
        "rounds": summary["rounds"],
        "dates": [summary["first_run_date"], summary["last_run_date"]],
        "min_detectable_pct": summary["power"]["min_detectable_pct"],
    }


def _pct(value: dict[str, Any]) -> str:
    mark = "" if value["verdict"] == SIGNIFICANT else " (n.s.)"
    return f"{value['median']:+.1f}%{mark}"


def render(result: dict[str, Any]) -> str:
    a, b = result["a"], result["b"]
    lines = [
        f"A: {a['out']} ({a['device_name']}, preset {a['preset']}, {a['rounds']} rounds)",
        f"B: {b['out']} ({b['device_name']}, preset {b['preset']}, {b['rounds']} rounds)",
        f"Method: {result['method']}.",
        "",
        f"{'variant':24s} {'A median':>9s} {'B median':>9s}  B/A    95% CI           verdict",
    ]
    for row in result["variants"]:
        ratio = row["b_over_a"]
        ci = "n/a" if ratio["ci95"] is None else f"[{ratio['ci95'][0]:.3f}, {ratio['ci95'][1]:.3f}]"
        lines.append(
            f"{row['variant']:24s} {row['median_s'][0]:8.2f}s {row['median_s'][1]:8.2f}s  "
            f"{ratio['ratio']:.3f}  {ci:16s} {ratio['verdict']}"
        )
    lines += ["", f"{'step':24s} {'saved in A':>18s} {'saved in B':>18s}  difference"]
    for row in result["steps"]:
        lines.append(
            f"{row['step']:24s} {_pct(row['saved_pct'][0]):>18s} {_pct(row['saved_pct'][1]):>18s}"
            f"  {row['difference_pct_points']:+.1f} points ({row['difference_verdict']})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.compare",
        description=__doc__.split("\n\n")[0],
        epilog="Documentation: docs/statistics.md (comparing result sets).",
    )
    parser.add_argument("out_a", metavar="OUT_A", help="an output folder of python -m lab.ablate")
    parser.add_argument("out_b", metavar="OUT_B", help="another one, of the same steps")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    try:
        result = compare(Path(args.out_a), Path(args.out_b))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
