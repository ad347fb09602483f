"""The charts: the waterfall (baseline time, one floating bar per step's paired saving with its
interval, labelled with the table's sign: "+0.34 s saved", "0.09 s slower"; a significant
saving green, a significant slowdown orange, a step whose saving is not significant grey and
hatched; each variant's floor a dotted tick over its own bar; the final time; beside it the
article's V100 waterfall in the article's own seconds, on its own axis; a step whose accuracy
fell significantly, and a variant that did not learn, named so under its bar in red) and, with
`--leave-one-out`, each step's saving in the cumulative order beside its saving when added
last."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from lab.analysis.stats import FELL, SIGNIFICANT  # noqa: E402
from lab.analysis.summary import chain_variants  # noqa: E402
from lab.recipe.vocabulary import on_a  # noqa: E402
from lab.records import outputs  # noqa: E402
from lab.records.summary import Summary  # noqa: E402
from lab.render.words import RULE_NAMES  # noqa: E402

SAVING, SLOWDOWN, TOTAL, ONE_OFF = "#2a9d8f", "#e76f51", "#264653", "#b8b8b8"
NOT_SIGNIFICANT_COLOR, NOT_SIGNIFICANT_HATCH = "#c8c8c8", "///"
WARNING = "#c1121f"  # the label of a bar whose accuracy fell or whose variant did not learn
ACCURACY_FELL, DID_NOT_LEARN = "accuracy fell", "did not learn"
# What the colours say, in the legend: one entry per kind of bar.
KINDS = {
    "total": ("measured time", TOTAL, None),
    "saving": ("saving, significant", SAVING, None),
    "slowdown": ("slowdown, significant", SLOWDOWN, None),
    "not_significant": (
        "not significant (or not assessed)",
        NOT_SIGNIFICANT_COLOR,
        NOT_SIGNIFICANT_HATCH,
    ),
}
# The article states no intervals: its steps are a saving or a slowdown by their sign alone.
ARTICLE_KINDS = {
    "total": ("the article's time", TOTAL, None),
    "saving": ("saving", SAVING, None),
    "slowdown": ("slowdown", SLOWDOWN, None),
}


# More steps than this and the two panels are stacked, each the full width, with labels set
# vertically: at 21 bars side by side the values and names overlap.
WIDE_STEPS = 8


@dataclass(frozen=True)
class Bar:
    """One bar of a waterfall: where it starts and ends (seconds), its kind (a key of KINDS)
    and the text above it, which reads like the report's table: a saving is positive."""

    start: float
    end: float
    kind: str
    text: str
    error: tuple[float, float] | None = None  # the saving's 95% interval, seconds


def change_text(saved_s: float, saved_pct: float, separator: str, digits: str = ".2f") -> str:
    """A step's bar label with the table's sign: '+0.34 s saved (+8.7%)' for a saving,
    '0.09 s slower (-2.4%)' for a slowdown (the percentage is the table's saving); `digits`
    formats the seconds ('.3g' for the article's, which it states as 33 s or 2.5 s)."""
    if saved_s >= 0:
        return f"+{saved_s:{digits}} s saved{separator}({saved_pct:+.1f}%)"
    return f"{-saved_s:{digits}} s slower{separator}({saved_pct:+.1f}%)"


def _kind(saved_s: float, verdict: str | None) -> str:
    """A step's bar kind: a saving or a slowdown when its verdict is significant; otherwise
    (not significant, or not assessed below 3 rounds) the grey, hatched kind. The article's
    steps (verdict None) have no interval: their sign alone."""
    if verdict is not None and verdict != SIGNIFICANT:
        return "not_significant"
    return "saving" if saved_s >= 0 else "slowdown"


def waterfall_bars(summary: Summary, separator: str) -> list[Bar]:
    """This machine's bars: the baseline, one per step (its paired saving, coloured by its
    verdict, with its interval) and the final time."""
    times = [v.paired_time_s for v in chain_variants(summary)]
    baseline = summary.total.baseline_s
    bars = [Bar(baseline, baseline, "total", f"{baseline:.2f} s")]
    for step, before, after in zip(summary.steps, times[:-1], times[1:], strict=True):
        saved = step.saved_s
        text = change_text(saved.estimate, step.saved_pct.estimate, separator)
        error = tuple(saved.ci95) if saved.ci95 else None
        bars.append(Bar(before, after, _kind(saved.estimate, saved.verdict), text, error))
    bars.append(Bar(times[-1], times[-1], "total", f"{times[-1]:.2f} s"))
    return bars


def article_bars(summary: Summary, separator: str) -> list[Bar]:
    """The sources' bars in their own seconds, as they state them (no scaling): the time at
    the chain's start, each step's saving, the time at the chain's end; where a chapter starts
    on another device, a total bar of its re-measured start first."""
    return [bar for bar, _ in _article_bars_labelled(summary, separator)]


def article_labels(summary: Summary, separator: str) -> list[str]:
    """The x labels of `article_bars`, in order."""
    return [label for _, label in _article_bars_labelled(summary, separator)]


def _article_bars_labelled(summary: Summary, separator: str) -> list[tuple[Bar, str]]:
    article = summary.article
    first = article.start_step or 0  # a `--from` chain starts later in the article
    restarts = {int(k): v for k, v in article.restarts_s.items()}
    start = restarts.get(first + 1, article.times_s[str(first)])
    bars = [(Bar(start, start, "total", f"{start:.4g} s"), "baseline")]
    before = start
    for number in range(first + 1, article.last_step + 1):
        if number in restarts and number != first + 1:
            before = restarts[number]
            device = article.devices.get(str(number), "")
            label = f"on {on_a(device)}" if device else "re-timed"
            bars.append((Bar(before, before, "total", f"{before:.4g} s"), label))
        after = article.times_s[str(number)]
        saved = before - after
        text = change_text(saved, 100 * saved / before, separator, ".3g")
        bars.append((Bar(before, after, _kind(saved, None), text), article.labels[str(number)]))
        before = after
    bars.append((Bar(before, before, "total", f"{before:.4g} s"), "final"))
    return bars


def _draw_bars(ax: Any, bars: list[Bar], labels: list[str], vertical: bool) -> float:
    """Draw the bars with their texts above the bar or its interval; return the highest point
    drawn (the bars' and intervals' tops, before the texts)."""
    highest = 0.0
    for x, bar in enumerate(bars):
        is_total = bar.kind == "total"
        bottom, height = (0.0, bar.end) if is_total else (min(bar.start, bar.end), 0.0)
        if not is_total:
            height = abs(bar.start - bar.end)
        _, color, hatch = KINDS.get(bar.kind, ARTICLE_KINDS.get(bar.kind))
        ax.bar(x, height, bottom=bottom, color=color, hatch=hatch, edgecolor="white", width=0.7)
        top = max(bar.start, bar.end)
        if bar.error is not None:
            # CI of the saving, drawn around the bar's lower end (where the new time sits).
            low, high = bar.error
            ax.errorbar(
                x,
                bar.start - (low + high) / 2,
                yerr=[[(high - low) / 2]],
                color="black",
                capsize=3,
                linewidth=1,
            )
            top = max(top, bar.start - low)
        highest = max(highest, top)
        ax.annotate(
            bar.text,
            (x, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            rotation=90 if vertical and not is_total else 0,
            fontsize=8,
        )
    ax.set_xticks(
        range(len(labels)), labels, rotation=45 if vertical else 35, ha="right", fontsize=8
    )
    return highest


def _legend_handles(kinds: dict[str, tuple[str, str, str | None]], used: set[str]) -> list[Any]:
    return [
        Patch(facecolor=color, hatch=hatch, edgecolor="white", label=label)
        for kind, (label, color, hatch) in kinds.items()
        if kind in used
    ]


def _floor_ticks(ax: Any, summary: Summary) -> list[Any]:
    """Each variant's own floor as a short tick over its own bar (the baseline's over the
    baseline, a step's over the step's bar, the final variant's over the final); the legend's
    handle, or none when no variant has a floor."""
    variants = chain_variants(summary)
    owners = [variants[0], *variants[1:], variants[-1]]
    floors = [(x, v.floor) for x, v in enumerate(owners) if v.floor]
    for x, floor in floors:
        ax.hlines(floor.floor_s, x - 0.42, x + 0.42, color="black", linestyle=":", linewidth=1.5)
    if not floors:
        return []
    last = floors[-1][1]
    label = (
        f"each variant's floor at {last.peak_tflops:.3g} TFLOP/s ({last.peak_source}; "
        f"final {last.floor_s:.2f} s, efficiency {last.efficiency:.1%})"
        if last.efficiency is not None
        else f"each variant's floor at {last.peak_tflops:.3g} TFLOP/s ({last.peak_source})"
    )
    return [Line2D([], [], color="black", linestyle=":", linewidth=1.5, label=label)]


def waterfall_figure(summary: Summary) -> Any:
    """The waterfall as a matplotlib figure (draw_waterfall saves it; tests read its
    artists)."""
    steps = summary.steps
    wide = len(steps) > WIDE_STEPS
    separator = " " if wide else "\n"
    first = summary.article.start_step or 0
    last = summary.article.last_step
    theirs_labels = article_labels(summary, separator)
    if wide:
        fig, (ours, article) = plt.subplots(2, 1, figsize=(16, 11))
    else:
        fig, (ours, article) = plt.subplots(
            1, 2, figsize=(13, 5.5), width_ratios=[len(steps) + 3, len(theirs_labels)]
        )
    bars = waterfall_bars(summary, separator)
    labels = marked_labels(["baseline", *[s.name for s in steps], "final"], summary, separator)
    highest = _draw_bars(ours, bars, labels, wide)
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
            fontsize=8,
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
    handles = _legend_handles(KINDS, {bar.kind for bar in bars}) + _floor_ticks(ours, summary)
    # Where no bar or text can be: below the axis beside few steps; with many, their marked
    # names fill that space, and the top right is empty (the chain descends, the axis has room).
    where = (
        {"loc": "upper right"} if wide else {"loc": "upper center", "bbox_to_anchor": (0.5, -0.3)}
    )
    ours.legend(handles=handles, ncol=2, fontsize=8, frameon=False, **where)
    meta = summary.meta_or_empty()
    device = meta.device_name if summary.meta else "?"
    ours.set_title(
        f"This machine: {device}, "
        f"preset {meta.preset}, {summary.rounds} rounds:{' ' if wide else chr(10)}paired savings "
        "with 95% t intervals (% of the variant before)",
        fontsize=10,
    )
    ours.set_ylabel("seconds (training + per-epoch evaluation)")
    ours.set_ylim(0, highest * (1.5 if wide else 1.2))  # room for the texts and legend
    if wide:
        theirs_labels = [label.replace("\n", " ") for label in theirs_labels]
    theirs = article_bars(summary, separator)
    article_top = _draw_bars(article, theirs, theirs_labels, wide)
    article.legend(
        handles=_legend_handles(ARTICLE_KINDS, {bar.kind for bar in theirs}),
        loc="upper right",
        fontsize=8,
        frameon=False,
    )
    rules = sorted({summary.article.rules[str(k)] for k in range(first + 1, last + 1)})
    rule_text = "; " + ", ".join(RULE_NAMES[rule] for rule in rules) if len(rules) > 1 else ""
    device = summary.article.device
    on = on_a(device) if ", " not in device else device
    article.set_title(
        f"The sources on {on}, in their own seconds "
        f"({theirs[0].start:.4g} s -> {theirs[-1].end:.4g} s){rule_text}",
        fontsize=10,
    )
    article.set_ylabel(f"{device} seconds, as the sources state them")
    article.set_ylim(0, article_top * (1.5 if wide else 1.25))
    for ax in (ours, article):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def draw_waterfall(summary: Summary, out: Path) -> list[Path]:
    """Write waterfall.png and waterfall.svg into `out`; return their paths."""
    return save_chart(waterfall_figure(summary), out, outputs.WATERFALL)


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
