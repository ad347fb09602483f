"""The charts: the waterfall (baseline time, one floating bar per step's paired saving with its
interval, the final time; the article's V100 waterfall beside it, scaled to the same baseline;
a step whose accuracy fell significantly, and a variant that did not learn, named so under its
bar in red) and, with `--leave-one-out`, each step's saving in the cumulative order beside its
saving when added last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from lab.analysis.stats import FELL  # noqa: E402
from lab.analysis.summary import chain_variants  # noqa: E402
from lab.records import outputs  # noqa: E402
from lab.records.summary import Summary  # noqa: E402

SAVING, SLOWDOWN, TOTAL, ONE_OFF = "#2a9d8f", "#e76f51", "#264653", "#b8b8b8"
WARNING = "#c1121f"  # the label of a bar whose accuracy fell or whose variant did not learn
ACCURACY_FELL, DID_NOT_LEARN = "accuracy fell", "did not learn"


# More steps than this and the two panels are stacked, each the full width, with labels set
# vertically: at 21 bars side by side the values and names overlap.
WIDE_STEPS = 8


def _bars(
    ax: Any,
    labels: list[str],
    starts: list[float],
    ends: list[float],
    errors: list[tuple[float, float] | None],
    vertical: bool,
) -> float:
    """Draw the bars with their values above the bar or its interval; return the highest
    point drawn (the bars' and intervals' tops, before the labels)."""
    highest = 0.0
    for x, (start, end, error) in enumerate(zip(starts, ends, errors, strict=True)):
        is_total = x in (0, len(labels) - 1)
        bottom, height = (0.0, end) if is_total else (min(start, end), abs(start - end))
        color = TOTAL if is_total else (SAVING if end <= start else SLOWDOWN)
        ax.bar(x, height, bottom=bottom, color=color, width=0.7)
        top = max(start, end)
        if error is not None:
            # CI of the saving, drawn around the bar's lower end (where the new time sits).
            low, high = error
            ax.errorbar(
                x,
                start - (low + high) / 2,
                yerr=[[(high - low) / 2]],
                color="black",
                capsize=3,
                linewidth=1,
            )
            top = max(top, start - low)
        highest = max(highest, top)
        value = end if is_total else start - end
        # A step's percentage is of the variant before it, as in the report's table.
        if is_total:
            text = f"{value:.2f} s"
        else:
            separator = " " if vertical else "\n"
            text = f"{-value:+.2f} s{separator}({-value / start:+.1%})"
        ax.annotate(
            text,
            (x, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            rotation=90 if vertical and not is_total else 0,
            fontsize=8 if vertical else 7,
        )
    ax.set_xticks(
        range(len(labels)), labels, rotation=45 if vertical else 35, ha="right", fontsize=8
    )
    return highest


def draw_waterfall(summary: Summary, out: Path) -> list[Path]:
    """Write waterfall.png and waterfall.svg into `out`; return their paths."""
    variants = chain_variants(summary)
    steps = summary.steps
    baseline = summary.total.baseline_s
    last = summary.article.last_step
    wide = len(steps) > WIDE_STEPS
    if wide:
        fig, (ours, article) = plt.subplots(2, 1, figsize=(16, 11))
    else:
        article_bars = last - (summary.article.start_step or 0) + 2
        fig, (ours, article) = plt.subplots(
            1, 2, figsize=(13, 5.5), width_ratios=[len(steps) + 3, article_bars]
        )
    times = [v.paired_time_s for v in variants]
    labels = marked_labels(
        ["baseline", *[s.name for s in steps], "final"], summary, separator=" " if wide else "\n"
    )
    starts = [baseline, *times[:-1], times[-1]]
    ends = [baseline, *times[1:], times[-1]]
    errors = [
        None,
        *[tuple(s.saved_s.ci95) if s.saved_s.ci95 else None for s in steps],
        None,
    ]
    highest = _bars(ours, labels, starts, ends, errors, wide)
    one_off = summary.total.one_off_preprocessing_s or 0.0
    if one_off > 0:
        x = len(labels)
        ours.bar(x, one_off, color=ONE_OFF, hatch="//", width=0.7)
        ours.annotate(
            f"{one_off:.2f} s",
            (x, one_off),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
        ours.set_xticks(
            range(x + 1),
            [*labels, "one-off\npreprocessing"],
            rotation=45 if wide else 35,
            ha="right",
            fontsize=8,
        )
    for label in ours.get_xticklabels():
        if "(" in label.get_text():
            label.set_color(WARNING)
    floor = variants[-1].floor
    if floor:
        ours.axhline(
            floor.floor_s,
            color="black",
            linestyle=":",
            linewidth=1,
            label=f"floor {floor.floor_s:.2f} s at {floor.peak_tflops:.3g} TFLOP/s "
            f"({floor.peak_source}; efficiency {floor.efficiency:.1%})",
        )
        ours.legend(loc="upper right", fontsize=8, frameon=False)
    meta = summary.meta_or_empty()
    device = meta.device_name if summary.meta else "?"
    break_or_not = " " if wide else "\n"
    ours.set_title(
        f"This machine: {device}, "
        f"preset {meta.preset}, {summary.rounds} rounds:{break_or_not}paired savings "
        "with 95% t intervals (% of the variant before)",
        fontsize=10,
    )
    ours.set_ylabel("seconds (training + per-epoch evaluation)")
    first = summary.article.start_step or 0  # a `--from` chain starts later in the article
    article_times = [summary.article.times_s[str(k)] for k in range(first, last + 1)]
    labels_by_number = summary.article.labels
    scale = baseline / article_times[0]
    scaled = [t * scale for t in article_times]
    article_labels = [labels_by_number[str(k)] for k in range(first + 1, last + 1)]
    if wide:
        article_labels = [label.replace("\n", " ") for label in article_labels]
    highest = max(
        highest,
        _bars(
            article,
            ["baseline", *article_labels, "final"],
            [scaled[0], *scaled[:-1], scaled[-1]],
            [scaled[0], *scaled[1:], scaled[-1]],
            [None] * (last - first + 2),
            wide,
        ),
    )
    rules = (
        "; Parts 1-4 time training + evaluation, Part 8 training + preprocessing"
        if len({summary.article.rules[str(k)] for k in range(first, last + 1)}) > 1
        else ""
    )
    article.set_title(
        f"The article on a {summary.article.device} "
        f"({article_times[0]:.0f} s -> {article_times[-1]:.4g} s),{break_or_not}"
        f"scaled to this baseline{rules}",
        fontsize=10,
    )
    article.set_ylabel("seconds, scaled")
    # Room above the highest bar or interval for its label (vertical labels need more).
    headroom = 1.35 if wide else 1.2
    for ax in (ours, article):
        ax.set_ylim(0, highest * headroom)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_chart(fig, out, outputs.WATERFALL)


def marked_labels(labels: list[str], summary: Summary, separator: str) -> list[str]:
    """The bars' labels (baseline, steps, final), each with what is wrong with its accuracy:
    `name (accuracy fell)` for a step whose accuracy fell significantly, `(did not learn)` for
    a variant that did not learn."""
    variants = chain_variants(summary)
    fell = [False, *[s.accuracy_change.verdict == FELL for s in summary.steps], False]
    quiet = [not v.learned for v in variants] + [not variants[-1].learned]
    marked = []
    for label, accuracy_fell, not_learned in zip(labels, fell, quiet, strict=True):
        marks = [ACCURACY_FELL] * accuracy_fell + [DID_NOT_LEARN] * not_learned
        marked.append(f"{label}{separator}({', '.join(marks)})" if marks else label)
    return marked


def save_chart(fig: Any, out: Path, stem: str) -> list[Path]:
    """Write the figure once per chart format. A chart is a function of its summary alone, so a
    rebuild is byte-identical: no date in the SVG and its element ids salted by the chart's name
    (matplotlib otherwise draws them from a random UUID on every save)."""
    paths = [out / f"{stem}.{extension}" for extension in outputs.CHART_FORMATS]
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        for path in paths:
            fig.savefig(path, dpi=120, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return paths


def draw_leave_one_out(summary: Summary, out: Path) -> list[Path]:
    """Per step: the saving in the cumulative order and when added last, in percent, with
    their 95% intervals; the gap between the two bars is the interaction."""
    steps = [s for s in summary.steps if s.leave_one_out is not None]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(steps) + 1.5))
    for row, step in enumerate(steps):
        for offset, (label, value, color) in enumerate(
            [
                ("in the cumulative order", step.saved_pct, SAVING),
                ("added last (leave-one-out)", step.leave_one_out.saved_pct, TOTAL),
            ]
        ):
            y = row + (offset - 0.5) * 0.35
            label = label if row == 0 else None
            ax.barh(y, value.estimate, height=0.33, color=color, label=label)
            if value.ci95:
                low, high = value.ci95
                ax.errorbar(
                    value.estimate,
                    y,
                    xerr=[[value.estimate - low], [high - value.estimate]],
                    color="black",
                    capsize=3,
                    linewidth=1,
                )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(steps)), [s.name for s in steps], fontsize=8)
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
