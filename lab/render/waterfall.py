"""The charts: the waterfall (baseline time, one floating bar per step's paired saving with its
interval, the final time; the article's V100 waterfall beside it, scaled to the same baseline)
and, with `--leave-one-out`, each step's saving in the cumulative order beside its saving when
added last."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from lab.analysis.summary import chain_variants  # noqa: E402
from lab.engine import outputs  # noqa: E402
from lab.recipe import article as the_article  # noqa: E402

SAVING, SLOWDOWN, TOTAL, ONE_OFF = "#2a9d8f", "#e76f51", "#264653", "#b8b8b8"


def _bars(
    ax: Any,
    labels: list[str],
    starts: list[float],
    ends: list[float],
    errors: list[tuple[float, float] | None],
    baseline: float,
) -> None:
    for x, (start, end, error) in enumerate(zip(starts, ends, errors, strict=True)):
        is_total = x in (0, len(labels) - 1)
        bottom, height = (0.0, end) if is_total else (min(start, end), abs(start - end))
        color = TOTAL if is_total else (SAVING if end <= start else SLOWDOWN)
        ax.bar(x, height, bottom=bottom, color=color, width=0.7)
        if error is not None:
            # CI of the saving, drawn around the bar's lower end (where the new time sits).
            low, high = error
            ax.errorbar(
                x,
                start - (low + high) / 2,
                yerr=[[(high - low) / 2]],
                color="black",
                capsize=4,
                linewidth=1,
            )
        value = end if is_total else start - end
        # A step's percentage is of the variant before it, as in the report's table.
        text = f"{value:.2f} s" if is_total else f"{-value:+.2f} s\n({-value / start:+.1%})"
        ax.text(x, max(start, end) + baseline * 0.01, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)


def _caption(summary: dict[str, Any]) -> str:
    """Which category of the profiled step time each step's saving came from."""
    parts = [f"{s['name']}: {s['where']['came_from']}" for s in summary["steps"] if s.get("where")]
    if not parts:
        return ""
    return "Saving came from (recorded steps: data / compute / other): " + "; ".join(parts)


def draw_waterfall(summary: dict[str, Any], out: Path) -> list[Path]:
    """Write waterfall.png and waterfall.svg into `out`; return their paths."""
    variants = chain_variants(summary)
    steps = summary["steps"]
    baseline = summary["total"]["baseline_s"]
    last = summary["article"].get("last_step", the_article.PART1_LAST)
    wide = len(steps) > 8
    size = (20, 6) if wide else (13, 5)
    fig, (ours, article) = plt.subplots(
        1, 2, figsize=size, width_ratios=[len(steps) + 3, last + 2]
    )
    times = [v["paired_time_s"] for v in variants]
    labels = ["baseline", *[s["name"] for s in steps], "final"]
    starts = [baseline, *times[:-1], times[-1]]
    ends = [baseline, *times[1:], times[-1]]
    errors = [
        None,
        *[tuple(s["saved_s"]["ci95"]) if s["saved_s"]["ci95"] else None for s in steps],
        None,
    ]
    _bars(ours, labels, starts, ends, errors, baseline)
    one_off = summary["total"]["one_off_preprocessing_s"] or 0.0
    if one_off > 0:
        x = len(labels)
        ours.bar(x, one_off, color=ONE_OFF, hatch="//", width=0.7)
        ours.text(
            x, one_off + baseline * 0.01, f"{one_off:.2f} s", ha="center", va="bottom", fontsize=7
        )
        ours.set_xticks(
            range(x + 1), [*labels, "one-off\npreprocessing"], rotation=35, ha="right", fontsize=7
        )
    floor = variants[-1].get("floor")
    if floor:
        ours.axhline(floor["floor_s"], color="black", linestyle=":", linewidth=1)
        ours.text(
            len(labels) - 0.5,
            floor["floor_s"],
            f"floor {floor['floor_s']:.2f} s at {floor['peak_tflops']:.3g} TFLOP/s "
            f"({floor['peak_source']}; efficiency {floor['efficiency']:.1%})",
            ha="right",
            va="bottom",
            fontsize=7,
        )
    meta = summary["meta"]
    ours.set_title(
        f"This machine: {meta.get('device_name', '?')}\n"
        f"preset {meta.get('preset')}, {summary['rounds']} rounds, paired savings "
        "with 95% t intervals",
        fontsize=9,
    )
    ours.set_ylabel("seconds (training + per-epoch evaluation)")
    article_times = [summary["article"]["times_s"][str(k)] for k in range(last + 1)]
    labels_by_number = summary["article"].get("labels") or {
        str(k): label for k, label in enumerate(["baseline", *the_article.STEP_LABELS])
    }
    scale = baseline / article_times[0]
    scaled = [t * scale for t in article_times]
    _bars(
        article,
        ["baseline", *[labels_by_number[str(k)] for k in range(1, last + 1)], "final"],
        [scaled[0], *scaled[:-1], scaled[-1]],
        [scaled[0], *scaled[1:], scaled[-1]],
        [None] * (last + 2),
        baseline,
    )
    rules = (
        "\nParts 1-4 time training + evaluation, Part 8 training + preprocessing"
        if last > the_article.PART4_LAST
        else ""
    )
    article.set_title(
        f"The article on a {summary['article']['device']} "
        f"({article_times[0]:.0f} s -> {article_times[-1]:.4g} s),"
        f"\nscaled to this baseline{rules}",
        fontsize=9,
    )
    for ax in (ours, article):
        ax.set_ylim(0, baseline * 1.15)
        ax.grid(axis="y", alpha=0.3)
    caption = _caption(summary)
    if caption:
        fig.text(0.01, 0.01, textwrap.fill(caption, 200), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06 if caption else 0, 1, 1))
    return save_chart(fig, out, outputs.WATERFALL)


def save_chart(fig: Any, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.{extension}" for extension in outputs.CHART_FORMATS]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def draw_leave_one_out(summary: dict[str, Any], out: Path) -> list[Path]:
    """Per step: the saving in the cumulative order and when added last, in percent, with
    their 95% intervals; the gap between the two bars is the interaction."""
    steps = [s for s in summary["steps"] if "leave_one_out" in s]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(steps) + 1.5))
    for row, step in enumerate(steps):
        for offset, (label, value, color) in enumerate(
            [
                ("in the cumulative order", step["saved_pct"], SAVING),
                ("added last (leave-one-out)", step["leave_one_out"]["saved_pct"], TOTAL),
            ]
        ):
            y = row + (offset - 0.5) * 0.35
            ax.barh(y, value["median"], height=0.33, color=color, label=label if row == 0 else None)
            if value["ci95"]:
                low, high = value["ci95"]
                ax.errorbar(
                    value["median"],
                    y,
                    xerr=[[value["median"] - low], [high - value["median"]]],
                    color="black",
                    capsize=3,
                    linewidth=1,
                )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(steps)), [s["name"] for s in steps], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("saving, % of the variant before the step (95% interval)")
    ax.set_title(
        "Order matters: each step's saving in the cumulative order and when added last",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_chart(fig, out, outputs.LEAVE_ONE_OUT)
