"""The breakdown chart. From the timed runs (records with phases): per variant, a horizontal
stacked bar of the whole timed region split into its phases (lab/recipe/vocabulary.py
`PHASES`), each phase's median over rounds, with the total's median and range over rounds as
a dot and whiskers, and beside it the total and milliseconds per trained image; A4 wide, every
text at least 8 pt, so 21 variants stay legible.

For records without phases, the profiled chart: per cumulative variant, a stacked bar of one
recorded training step split into its labelled phases (data wait, host-to-device, forward,
backward, optimiser, the rest), from the traces' `lab/...` ranges; medians over the profiled
passes, with the range of the whole step across passes when there are several. Above each bar,
the cores the DataLoader workers and the main process used, which the trace cannot show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.recipe.vocabulary import PHASES as TIMED_PHASES
from lab.records import outputs
from lab.records.summary import Profile, Summary, VariantSummary
from lab.render.waterfall import plt, save_chart

A4_WIDTH_IN = 8.27  # the page a report prints on
MIN_FONT_PT = 8  # no text on the timed-region chart is smaller
# One colour per phase of the timed region: training in greens and browns, the evaluation in
# blues, start-up and edges lighter than the work they frame, `other` grey.
PHASE_COLORS = {
    "train_startup": "#e9c46a",
    "train_data_wait": "#f4a261",
    "h2d": "#e76f51",
    "forward": "#2a9d8f",
    "backward": "#264653",
    "optimizer": "#8ab17d",
    "weight_average": "#6a4c93",
    "train_edge": "#f6d8ae",
    "eval_startup": "#a9d6e5",
    "eval_data_wait": "#89c2d9",
    "eval_h2d": "#61a5c2",
    "eval_forward": "#2c7da0",
    "eval_edge": "#cfe8ef",
    "other": "#b8b8b8",
}

# Phase keys of `summary.phase_values`, in stacking order, with their legend labels and colours.
PHASES = {
    "data_wait": ("data wait", "#e9c46a"),
    "h2d": ("host-to-device", "#f4a261"),
    "forward": ("forward", "#2a9d8f"),
    "backward": ("backward", "#264653"),
    "optimizer": ("optimiser", "#8ab17d"),
    "compute": ("compute (forward+backward+optimiser)", "#2a9d8f"),  # profiles not split by phase
    "other": ("other (Python, the loop)", "#b8b8b8"),
}


def _cpu_label(profile: Profile) -> str:
    cpu = profile.cpu
    if cpu is None or cpu.workers_cores is None:
        return ""
    return (
        f"{cpu.worker_processes:g} workers: {cpu.workers_cores:.2f} cores\n"
        f"main: {cpu.main_cores:.2f} cores"
    )


def has_timed_phases(summary: Summary) -> bool:
    """Whether every variant's records carry phases, so the chart is the timed region's."""
    return bool(summary.variants) and all(v.phases_s is not None for v in summary.variants)


def draw_breakdown(summary: Summary, out: Path) -> list[Path]:
    """Write breakdown.png and breakdown.svg into `out` (records with phases, or profiled
    jobs); return them."""
    fig = breakdown_figure(summary)
    if fig is None:
        for stale in (out / f"{outputs.BREAKDOWN}.{ext}" for ext in outputs.CHART_FORMATS):
            stale.unlink(missing_ok=True)  # a rebuild without profile.jsonl shows no old chart
        return []
    return save_chart(fig, out, outputs.BREAKDOWN)


def breakdown_figure(summary: Summary) -> Any | None:
    """The timed region's chart where the records have phases, else the profiled chart; None
    when neither can be drawn."""
    if has_timed_phases(summary):
        return _timed_figure(summary)
    variants = summary.profiled_variants()
    return _profiled_figure(summary, variants) if variants else None


def trained_images(variant: VariantSummary) -> float | None:
    """The images a run trains on: the training set's size times the epochs (its resolved
    config); None when the config does not say."""
    images, epochs = variant.config.get("train_images"), variant.config.get("epochs")
    return images * epochs if images and epochs else None


def _bar_text(variant: VariantSummary) -> str:
    """'3.89 s, 3.89 ms/image': the total's median, and per trained image."""
    total = variant.timing.total_s.median
    images = trained_images(variant)
    per_image = f", {1e3 * total / images:.3g} ms/image" if images else ""
    return f"{total:.2f} s{per_image}"


def _timed_figure(summary: Summary) -> Any:
    """Per variant, its phases' medians stacked left to right, the total's median and range
    over rounds as a dot with whiskers."""
    variants = summary.variants
    fig, ax = plt.subplots(figsize=(A4_WIDTH_IN, 0.3 * len(variants) + 2.6))
    drawn: set[str] = set()
    right = 0.0
    for row, variant in enumerate(variants):
        left = 0.0
        for phase, color in PHASE_COLORS.items():
            sample = variant.phases_s.get(phase)
            if sample is None or sample.median <= 0:
                continue
            label = phase if phase not in drawn else None
            drawn.add(phase)
            ax.barh(row, sample.median, left=left, color=color, height=0.7, label=label)
            left += sample.median
        total = variant.timing.total_s
        low, high = min(total.values), max(total.values)
        ax.errorbar(
            total.median,
            row,
            xerr=[[total.median - low], [high - total.median]],
            fmt="o",
            markersize=3,
            color="black",
            capsize=3,
            linewidth=1,
        )
        ax.text(max(high, left) * 1.01, row, _bar_text(variant), va="center", fontsize=8)
        right = max(right, high, left)
    ax.set_yticks(range(len(variants)), [v.name for v in variants], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.invert_yaxis()  # the chain reads top to bottom, as in the report's tables
    ax.set_xlim(0, right * 1.3)  # room for the texts beside the bars
    ax.set_xlabel(
        "seconds of the timed region (training + per-epoch evaluation); each phase the "
        "median over rounds",
        fontsize=8,
    )
    meta = summary.meta_or_empty()
    ax.set_title(
        f"Where each variant's timed seconds go ({summary.rounds} rounds; dot and whiskers: "
        f"the total's median and range)\n{meta.device_name if summary.meta else '?'}, "
        f"preset {meta.preset}",
        fontsize=9,
    )
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(phase) for phase in TIMED_PHASES if phase in labels]
    columns = 4
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize=8,
        loc="lower center",
        ncol=columns,
        frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    # The legend's rows below the axis: about 0.2 in each, and a margin.
    legend_in = 0.2 * -(-len(order) // columns) + 0.15
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    return fig


def _profiled_figure(summary: Summary, variants: list[VariantSummary]) -> Any:
    """The profiled chart (records without phases): ms per recorded training step."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(variants) + 2), 5))
    top = 0.0
    for x, variant in enumerate(variants):
        profile = variant.profile
        ms = {k: 1e3 * v for k, v in profile.phases_per_step_s.items()}
        bottom = 0.0
        for key, (label, color) in PHASES.items():
            if key not in ms:
                continue
            ax.bar(
                x, ms[key], bottom=bottom, color=color, width=0.6, label=label if x == 0 else None
            )
            bottom += ms[key]
        step = profile.step_per_step_s
        if profile.passes > 1:
            low, high = (1e3 * value for value in step.range)
            ax.errorbar(x, bottom, yerr=[[bottom - low], [high - bottom]], color="black", capsize=4)
            bottom = max(bottom, high)
        ax.text(
            x,
            bottom * 1.02,
            f"{bottom:.0f} ms\n{_cpu_label(profile)}",
            ha="center",
            va="bottom",
            fontsize=6,
        )
        top = max(top, bottom)
    passes = min(v.profile.passes for v in variants)
    ax.set_xticks(
        range(len(variants)), [v.name for v in variants], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylim(0, top * 1.3)
    ax.set_ylabel("ms per recorded training step")
    spread = f"medians of {passes} passes, bars: range of the step" if passes > 1 else "one pass"
    ax.set_title(
        f"Where a training step's time goes (profiled, {spread})\n"
        f"{summary.meta.device_name if summary.meta else '?'}, "
        f"preset {summary.meta_or_empty().preset}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
