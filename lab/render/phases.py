"""The chart of where each step's seconds went: per step (and the control, the phases' noise
floor), a horizontal diverging bar of its paired saving split by phase of the timed region
(`StepSummary.phase_savings`): each phase's estimate a segment, savings stacked right of zero,
phases that took longer stacked left; a phase whose saving is significant solid, the others
faded and hatched; a black tick at the sum, the step's mean per-round saving. The report's
table under "Where each step's seconds went" gives the same numbers with their intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.patches import Patch

from lab.recipe.vocabulary import PHASES
from lab.records import outputs
from lab.records.summary import Summary
from lab.records.summary_step import PhaseSaving
from lab.render.breakdown import A4_WIDTH_IN, PHASE_COLORS
from lab.render.waterfall import NOT_SIGNIFICANT_HATCH, plt, save_chart
from lab.render.words import phase_comparisons

FADED = 0.35  # the alpha of a phase whose saving is not significant (or not assessed)


def segment_style(saving: PhaseSaving) -> dict[str, Any]:
    """How a phase's segment is drawn: solid when its saving is significant, faded and hatched
    otherwise (not significant, or not assessed below 3 rounds)."""
    if saving.significant:
        return {"alpha": 1.0, "hatch": None}
    return {"alpha": FADED, "hatch": NOT_SIGNIFICANT_HATCH}


def segment_id(row: int, phase: str) -> str:
    """The segment's artist id (its `gid`, an element id in the SVG): tests find it by this."""
    return f"step-phase-{row}-{phase}"


def step_phases_figure(summary: Summary) -> Any | None:
    """The chart as a matplotlib figure; None when the records carry no phases."""
    rows = phase_comparisons(summary)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(A4_WIDTH_IN, 0.4 * len(rows) + 2.4))
    seen: set[str] = set()
    widest_right = widest_left = 0.0
    for row, (_, savings, total) in enumerate(rows):
        right = left = 0.0
        for phase in PHASES:
            saving = savings.get(phase)
            if saving is None or saving.estimate_s == 0:
                continue
            start = right if saving.estimate_s > 0 else left
            ax.barh(
                row,
                saving.estimate_s,
                left=start,
                height=0.6,
                color=PHASE_COLORS[phase],
                edgecolor="white",
                linewidth=0.5,
                label=phase if saving.significant and phase not in seen else None,
                gid=segment_id(row, phase),
                **segment_style(saving),
            )
            seen |= {phase} if saving.significant else set()
            if saving.estimate_s > 0:
                right += saving.estimate_s
            else:
                left += saving.estimate_s
        ax.plot([total, total], [row - 0.38, row + 0.38], color="black", linewidth=1.5)
        ax.text(right, row, f" {total:+.2f} s", va="center", ha="left", fontsize=8)
        widest_right, widest_left = max(widest_right, right, total), min(widest_left, left, total)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [name for name, _, _ in rows], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.invert_yaxis()
    span = (widest_right - widest_left) or 1.0
    ax.set_xlim(widest_left - 0.05 * span, widest_right + 0.15 * span)  # room for the sums
    ax.set_xlabel(
        "seconds saved per phase (mean per-round difference, before - after); "
        "right: saved, left: took longer",
        fontsize=8,
    )
    ax.set_title(
        "Where each step's seconds went, by phase of the timed region (paired within rounds)\n"
        "solid: the phase's saving is significant (95% t); faded, hatched: not; "
        "black tick: the sum",
        fontsize=9,
    )
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(phase) for phase in PHASES if phase in labels]
    handles = [handles[i] for i in order] + [
        Patch(
            facecolor="#888888", alpha=FADED, hatch=NOT_SIGNIFICANT_HATCH, label="not significant"
        )
    ]
    labels = [labels[i] for i in order] + ["not significant (any phase)"]
    if handles:
        fig.legend(
            handles,
            labels,
            title="phases with a significant saving in some row",
            title_fontsize=8,
            fontsize=8,
            loc="lower center",
            ncol=4,
            frameon=False,
        )
    ax.grid(axis="x", alpha=0.3)
    legend_in = (0.2 * -(-len(handles) // 4) + 0.4) if handles else 0.0
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    return fig


def draw_step_phases(summary: Summary, out: Path) -> list[Path]:
    """Write step-phases.png and .svg into `out` (records with phases); return them. Without
    phases a rebuild removes an old chart."""
    fig = step_phases_figure(summary)
    if fig is None:
        for stale in (out / f"{outputs.STEP_PHASES}.{ext}" for ext in outputs.CHART_FORMATS):
            stale.unlink(missing_ok=True)
        return []
    return save_chart(fig, out, outputs.STEP_PHASES)
