"""The breakdown chart: per cumulative variant, a stacked bar of one recorded training step
split into its labelled phases (data wait, host-to-device, forward, backward, optimiser, the
rest), from the traces' `lab/...` ranges; medians over the profiled passes, with the range of
the whole step across passes when there are several. Above each bar, the cores the DataLoader
workers and the main process used, which the trace cannot show."""

from __future__ import annotations

from pathlib import Path

from lab.records import outputs
from lab.records.summary import Profile, Summary
from lab.render.waterfall import plt, save_chart

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


def draw_breakdown(summary: Summary, out: Path) -> list[Path]:
    """Write breakdown.png and breakdown.svg into `out` (profiled jobs only); return them."""
    variants = [v for v in summary.variants if v.profile is not None]
    if not variants:
        for stale in (out / f"{outputs.BREAKDOWN}.{ext}" for ext in outputs.CHART_FORMATS):
            stale.unlink(missing_ok=True)  # a rebuild without profile.jsonl shows no old chart
        return []
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
    return save_chart(fig, out, outputs.BREAKDOWN)
