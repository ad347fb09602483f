"""The text `python -m lab.compare` prints for a comparison (`lab.analysis.compare`)."""

from __future__ import annotations

from typing import Any

from lab.analysis.stats import SIGNIFICANT


def _pct(value: dict[str, Any]) -> str:
    mark = "" if value["verdict"] == SIGNIFICANT else " (n.s.)"
    return f"{value['estimate']:+.1f}%{mark}"


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
