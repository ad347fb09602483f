"""report.md from a summary, and `write_report`: summary.json, the charts, report.md and the
TensorBoard scalars of an output folder, from its records alone (results.jsonl and plan.json;
profile.jsonl and sessions.jsonl when present). Nothing here imports the training stack, the
step registry or the article's figures of the day: what the report states about a step comes
from the plan the job stored."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lab.analysis.stats import CONFIDENCE, FELL, MIN_ROUNDS, ROSE, SIGNIFICANT
from lab.analysis.summary import CATEGORIES, build_summary, chain_variants
from lab.errors import LabError
from lab.recipe.counters import COUNTERS, SHOWN_CHANGE
from lab.recipe.vocabulary import TRAIN_EVAL, TRAIN_PREPROCESS, WHITEN_TRAIN_FINAL_EVAL, on_a
from lab.records import outputs
from lab.records.jsonl import read_records
from lab.records.plan import read_plan
from lab.records.summary import CpuUse, Summary, VariantSummary
from lab.records.summary_step import (
    AccuracyChange,
    Comparison,
    PhaseSaving,
    StepSummary,
    VariantComparison,
)
from lab.render.breakdown import draw_breakdown, has_timed_phases
from lab.render.phases import draw_step_phases
from lab.render.tblogs import write_tensorboard_logs
from lab.render.waterfall import draw_leave_one_out, draw_waterfall
from lab.render.words import (
    LEARNED_RULE,
    MATERIAL_SHARE,
    NOT_LEARNED,
    REPLACEMENT_CAP,
    ROUND_STOP_REASONS,
    RULE_NAMES,
    RULE_SHORT,
    adaptive_line,
    came_from,
    disturbed_evidence,
    interaction_reading,
    material_phases,
    no_effect,
    phase_comparisons,
    phase_saving,
    phases_came_from,
    significant_phases,
)


def _ci(ci: list[float] | None, digits: int = 2) -> str:
    return "n/a" if ci is None else f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def _saving(
    comparison: StepSummary | VariantComparison | Comparison, unit: str = "s", learned: bool = True
) -> str:
    """'+0.42 s [+0.10, +0.70]' or '+4.1% [-1.2, +9.0] (not significant)'; a variant that did
    not learn says so in its verdict: '+4.1% [...] (not significant; did not learn at this
    scale)'."""
    value = comparison.saved_s if unit == "s" else comparison.saved_pct
    notes = ([] if value.verdict == SIGNIFICANT else [value.verdict]) + (
        [] if learned else [NOT_LEARNED]
    )
    verdict = f" ({'; '.join(notes)})" if notes else ""
    if unit == "s":
        return f"{value.estimate:+.2f} s {_ci(value.ci95)}{verdict}"
    return f"{value.estimate:+.1f}% {_ci(value.ci95, 1)}{verdict}"


def _accuracy_change(change: AccuracyChange) -> str:
    """'-8.4 pts [-12.1, -4.7], fell', '+0.2 pts [-1.0, +1.4], held' or '-8.4 pts, not
    assessed (needs 3+ rounds)'."""
    interval = "" if change.low_pts is None else f" {_ci([change.low_pts, change.high_pts], 1)}"
    return f"{change.estimate_pts:+.1f} pts{interval}, {change.verdict}"


def _counters_changed(step: StepSummary, before: VariantSummary) -> str:
    """Exact counters: any change; timed ones: a change of more than SHOWN_CHANGE."""
    parts = []
    for key, counter in COUNTERS.items():
        if key not in step.counter_deltas:
            continue
        delta = step.counter_deltas[key]
        reference = abs(before.counters[key]) or 1.0
        if (counter.exact and delta != 0) or (
            not counter.exact and abs(delta) / reference > SHOWN_CHANGE
        ):
            parts.append(f"{counter.label} {counter.delta_format.format(delta)}")
    return "; ".join(parts) or "none"


def _accuracy(variant: VariantSummary) -> str:
    """'61.2% (0/1 reached 94%)', or '10.0% (0/1 reached 20%; did not learn)'."""
    acc = variant.accuracy
    learned = "" if variant.learned else "; did not learn"
    return f"{acc.median:.1%} ({acc.reached}/{acc.runs} reached {acc.target:.0%}{learned})"


def _article_claim(step: StepSummary) -> str:
    claim = "-" if step.article.saved_s is None else f"-{step.article.saved_s:g} s"
    notes = [step.article.where] if step.article.where else []
    if step.article.shared_with:
        notes.append(f"with {', '.join(step.article.shared_with)}")
    return claim + (f" ({', '.join(notes)})" if notes else "")


def _step_name(step: StepSummary) -> str:
    flag = " ⚑" if step.flagged else ""
    no_effect = " ∅" if step.no_effect_expected else ""
    return f"+{step.name}{flag}{no_effect}"


def _cause(step: StepSummary) -> str:
    """The phases of the timed region whose paired saving is significant (from the rounds);
    for records without phases, which part of the profiled step time the saving came from
    (data, compute, other), or why that cannot be said; empty for an unprofiled job."""
    if step.phase_savings is not None:
        return phases_came_from(step.phase_savings)
    return came_from(step.where) if step.where else ""


def _baseline_name(summary: Summary) -> str:
    """The first row: the baseline, or for a `--from` chain the recipe it starts from."""
    return f"baseline (after `{summary.start[-1]}`)" if summary.start else "baseline"


def _table(summary: Summary) -> list[str]:
    chain = chain_variants(summary)
    lines = [
        "| step | time (paired) | median run | saved (s, 95% CI) | saved (% of previous) "
        "| saving came from | counters changed | accuracy | accuracy change "
        f"(points, 95% CI) | sources ({summary.article.device}) |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- |",
        f"| {_baseline_name(summary)} | {chain[0].paired_time_s:.2f} s | "
        f"{chain[0].timing.total_s.median:.2f} s | | | | | {_accuracy(chain[0])} | | "
        f"{summary.article.baseline_s:g} s |",
    ]
    for before, variant, step in zip(chain, chain[1:], summary.steps, strict=False):
        lines.append(
            f"| {_step_name(step)} | {variant.paired_time_s:.2f} s | "
            f"{variant.timing.total_s.median:.2f} s | {_saving(step)} | "
            f"{_saving(step, '%', variant.learned)} | {_cause(step)} | "
            f"{_counters_changed(step, before)} | {_accuracy(variant)} | "
            f"{_accuracy_change(step.accuracy_change)} | {_article_claim(step)} |"
        )
    return lines


def _noise_floor(summary: Summary) -> list[str]:
    """The control and the minimum detectable saving, in plain words."""
    lines = []
    control, power = summary.control, summary.power
    if control is None:
        lines.append(
            "- No control ran (`--no-control` or a single variant): this job measured no noise "
            "floor of its own."
        )
    else:
        pct = control.saved_pct
        reading = (
            "the machine was too noisy in this job to trust small savings: a second copy of "
            "the baseline read as different from the baseline"
            if pct.verdict == SIGNIFICANT
            else "as it should, since the two ran the same code: no sign that the machine was "
            "too noisy for this job's intervals"
        )
        lines.append(
            f"- **Control** (`{control.variant}`, the baseline run a second time in every "
            f"round): {pct.estimate:+.1f}% {_ci(pct.ci95, 1)}, {pct.verdict}; "
            f"{reading}."
        )
    lines.extend(rounds_lines(summary))
    mde = power.min_detectable_pct
    if mde is None:
        lines.append(
            f"- Fewer than {MIN_ROUNDS} rounds: no interval and no minimum detectable saving."
        )
    else:
        lines.append(
            f"- **Minimum detectable saving: {mde:.1f}%.** With {power.rounds} rounds and this "
            f"job's paired noise ({power.paired_sd_pct:.1f}% per round, pooled over every "
            "comparison), a step that saves at least that much reads significant 80% of the "
            'time; a smaller real saving may read "not significant".'
        )
    return lines


def _rule_table(summary: Summary) -> list[str]:
    """Each step beside the article's figure, measured on the article's own timing rule."""
    steps = [s for s in summary.steps if s.article.rule]
    if all(s.article.rule == TRAIN_EVAL for s in steps):
        return []  # every step on the lab's own rule: the results table says it all
    lines = [
        "## Against the article, on its own timing rule",
        "",
        f"The lab times one region for every variant: {RULE_NAMES[TRAIN_EVAL]}. The article's "
        f"Parts 1-4 timed the same; Part 8 timed {RULE_NAMES[TRAIN_PREPROCESS]} (its one-off "
        "preprocessing, the whitening's eigendecomposition included)"
        + (
            f"; chapter 2's sources (airbench) timed {RULE_NAMES[WHITEN_TRAIN_FINAL_EVAL]}"
            if any(s.article.rule == WHITEN_TRAIN_FINAL_EVAL for s in steps)
            else ""
        )
        + ". Here each step's saving "
        "is recomputed from the recorded parts on its own part's rule (paired, 95% t), beside "
        "the article's saving as a percentage of its previous time. Percentages, not seconds, "
        "are what transfers between machines.",
        "",
        "| step | source: where, rule | source saved | ours, on that rule | ours, timed region |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for step in steps:
        claim = step.article
        rule = RULE_SHORT[claim.rule]
        shared = f" (with {', '.join(claim.shared_with)})" if claim.shared_with else ""
        lines.append(
            f"| {_step_name(step)} | {claim.where}, {rule} | "
            f"-{claim.saved_s:g} s ({claim.saved_pct:.1f}%){shared} | "
            f"{_saving(claim.ours_on_rule, '%')} | {_saving(step, '%')} |"
        )
    lines += ["", "∅ = no effect expected on this device (see Reading).", ""]
    return lines


def _sum_check(summary: Summary) -> str:
    total = summary.total
    return (
        f"The steps' savings add up to {total.sum_of_step_savings_s:.2f} s = baseline "
        f"{total.baseline_s:.2f} s - final {total.final_s:.2f} s (the paired chain; the "
        f"final variant's median run is {total.final_median_s:.2f} s)."
    )


def _leave_one_out_table(summary: Summary) -> list[str]:
    steps = [s for s in summary.steps if s.leave_one_out is not None]
    if not steps:
        return []
    lines = [
        "## Order-independent attribution (leave-one-out)",
        "",
        "Each step's saving when it is added last (all steps but it -> all steps), beside its "
        "saving in the cumulative order. The difference is the interaction: how much the "
        "step's worth depends on the steps before it.",
        "",
        "| step | cumulative saving | saving when added last | interaction | reading "
        "| accuracy change when added last |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for step in steps:
        interaction = step.interaction
        verdict = "" if interaction.verdict == SIGNIFICANT else f" ({interaction.verdict})"
        lines.append(
            f"| {step.name} | {_saving(step, '%')} | {_saving(step.leave_one_out, '%')} | "
            f"{interaction.pct_points:+.1f} points{verdict} | {interaction_reading(step)} | "
            f"{_accuracy_change(step.leave_one_out.accuracy_change)} |"
        )
    lines += ["", f"![leave-one-out]({outputs.LEAVE_ONE_OUT}.png)", ""]
    return lines


def _reading(summary: Summary) -> list[str]:
    """A plain reading generated from the numbers."""
    total, steps = summary.total, summary.steps
    if not steps:
        v = summary.variants[0]
        return [
            f"- One variant: {v.timing.total_s.median:.2f} s median over "
            f"{v.runs} run(s), {_accuracy(v)}."
        ]
    claim = summary.article
    lines = [
        f"- Baseline {total.baseline_s:.2f} s -> final {total.final_s:.2f} s: "
        f"{total.saved_s:.2f} s saved ({total.saved_pct:.1f}%); the article saved "
        f"{claim.saved_s:g} s of {claim.baseline_s:g} s "
        f"({claim.saved_s / claim.baseline_s:.1%}) on a {claim.device}.",
    ]
    significant = [s for s in steps if s.saved_pct.verdict == SIGNIFICANT]
    faster = [s for s in significant if s.saved_pct.estimate > 0]
    if faster:
        biggest = max(faster, key=lambda s: s.saved_pct.estimate)
        lines.append(
            f"- Largest significant saving: {biggest.name} "
            f"({biggest.saved_s.estimate:+.2f} s, {biggest.saved_pct.estimate:.1f}%)."
        )
    quiet = [s.name for s in steps if s.saved_pct.verdict != SIGNIFICANT]
    if quiet:
        lines.append(
            f"- Not distinguishable from run-to-run noise here: {', '.join(quiet)}. "
            '"Not significant" means the data do not show a difference, not that there is none.'
        )
    slower = [s.name for s in significant if s.saved_pct.estimate < 0]
    if slower:
        lines.append(f"- Significantly slower on this machine: {', '.join(slower)}.")
    lines.extend(_accuracy_reading(summary))
    for step in (s for s in steps if s.no_effect_expected):
        lines.append(
            f"- ∅ {step.name}: {no_effect(step)}; its measured change is {_saving(step, '%')}."
        )
    if summary.meta_or_empty().preset != "dawnbench" and len(steps) > 1:
        lines.append(
            "- Accuracy: a scaled preset trains on a small subset for a fraction of an epoch, "
            "so no variant comes near 94%; compare accuracies between variants of this job "
            "(equal scale), not with the article."
        )
    for step in (s for s in steps if s.flagged):
        broken = [
            f"{c.counter} expected {c.expected} ({c.before:.3g} -> {c.after:.3g})"
            for c in step.expectations
            if not c.holds
        ]
        lines.append(
            f"- ⚑ {step.name}: counters did not move as its docstring says: "
            f"{'; '.join(broken) or 'measured counters differ from the plan'}."
        )
    if total.one_off_preprocessing_s:
        part8 = any(s.article.rule == TRAIN_PREPROCESS for s in steps)
        where = (
            "as in Parts 1-4 of the article; Part 8 counts it, see the table on its rule"
            if part8
            else "as in the article"
        )
        lines.append(
            f"- One-off preprocessing costs {total.one_off_preprocessing_s:.2f} s before "
            f"training, outside the timed region ({where}), shown as its own bar."
        )
    return lines


def _accuracy_reading(summary: Summary) -> list[str]:
    """The steps whose accuracy fell or rose significantly, and the variants that did not
    learn: a saving bought with accuracy, or timed on a recipe that does not learn, is not the
    article's kind of saving."""
    lines = []
    for verdict, after in (
        (FELL, " A saving bought with accuracy is not the article's kind of saving."),
        (ROSE, ""),
    ):
        steps = [s for s in summary.steps if s.accuracy_change.verdict == verdict]
        if steps:
            named = ", ".join(f"{s.name} ({_accuracy_change(s.accuracy_change)})" for s in steps)
            lines.append(
                f"- Accuracy {verdict} significantly (paired within rounds) at: {named}.{after}"
            )
    quiet = [v.name for v in chain_variants(summary) if not v.learned]
    if quiet:
        lines.append(
            f"- Did not learn at this scale ({LEARNED_RULE}): {', '.join(quiet)}. Their time "
            "is that of a recipe that does not learn here, so the steps into them measure no "
            "saving of the article's kind."
        )
    return lines


def _phase_lines(summary: Summary) -> list[str]:
    """Where each step's seconds went: per phase of the timed region, the saving paired within
    rounds, a table of the phases some step moved significantly and a sentence per step."""
    rows = phase_comparisons(summary)
    if not rows:
        return [
            "These records carry no phases (`measurements.phases_s`; runs recorded before the "
            "lab accounted phases): the profiled passes below are the only attribution, and "
            "the results table's `saving came from` is theirs.",
            "",
        ]
    moved = {phase for _, savings, _ in rows for phase in significant_phases(savings)}
    phases = [phase for phase in rows[0][1] if phase in moved]
    header = " | ".join(phases)
    lines = [
        "Every timed run splits its timed region into phases that sum to its total "
        "(docs/profiling.md). Per step, each phase's saving is paired within rounds like the "
        f"accuracy: the mean of the per-round differences (before - after), with its "
        f"{CONFIDENCE:.0%} Student-t interval; the phases add up to the step's mean per-round "
        "saving (the `sum` column; the results table's saving is the geometric-mean ratio, a "
        "close but different figure). Columns: the phases some step moved significantly "
        "(**bold**); `rest`: every other phase, summed. The control row is the phases' noise "
        "floor: the baseline against itself.",
        "",
        f"| step | sum | {header}{' | ' if phases else ''}rest |",
        "| --- | ---: |" + " --- |" * (len(phases) + 1),
    ]
    for name, savings, total in rows:
        cells = [
            f"**{phase_saving(savings[phase])}**"
            if savings[phase].significant
            else phase_saving(savings[phase])
            for phase in phases
        ]
        rest = sum(s.estimate_s for phase, s in savings.items() if phase not in phases)
        lines.append(f"| {name} | {total:+.2f} s | {' | '.join([*cells, f'{rest:+.2f} s'])} |")
    lines += ["", *_phase_reading(rows), "", *_phase_charts(summary)]
    return lines


def _phase_charts(summary: Summary) -> list[str]:
    """The two charts of the phases: each step's saving split by phase (the table above, drawn),
    and each variant's timed region by phase (the breakdown, when every variant has phases)."""
    lines = [
        "Each step's saving split by phase (the table above, drawn: a segment per phase, "
        "savings right of zero, phases that took longer left; solid where the phase's saving is "
        "significant, faded and hatched where not; the black tick is the sum):",
        "",
        f"![step phases]({outputs.STEP_PHASES}.png)",
        "",
    ]
    if has_timed_phases(summary):
        lines += [
            "Each variant's timed region by phase (the median of each phase over rounds, "
            "stacked; the dot and whiskers are the total's median and range over rounds; "
            "beside each bar its median total and milliseconds per trained image):",
            "",
            f"![breakdown]({outputs.BREAKDOWN}.png)",
            "",
        ]
    return lines


def _phase_reading(rows: list[tuple[str, dict[str, PhaseSaving], float]]) -> list[str]:
    """A sentence per row: which phases took the seconds, and what share of the saving the
    significant ones cover."""
    lines = []
    for name, savings, total in rows:
        named, small = material_phases(savings)
        if not named:
            lines.append(f"- {name}: {phases_came_from(savings)}.")
            continue
        covered = sum(savings[phase].estimate_s for phase in named)
        share = f"; together {covered:+.2f} s of its {total:+.2f} s" if total else ""
        parts = ", ".join(f"{phase} {phase_saving(savings[phase])}" for phase in named)
        rest = (
            f" (also significant, each under {MATERIAL_SHARE:.0%} of the largest or of the "
            f"saving: {', '.join(small)})"
            if small
            else ""
        )
        lines.append(f"- {name}: {parts}{share}{rest}.")
    return lines


def _where_table(summary: Summary) -> list[str]:
    """Where the profiled steps' time went, per variant, and how each step moved it."""
    variants = [v for v in summary.variants if v.profile is not None]
    if not variants:
        return ["Not profiled (`--no-profile`)."]
    lines = [
        "| variant | recorded training steps | data | compute | other | profiler overhead "
        "| trace (tb/) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in variants:
        p = v.profile
        overhead = "n/a" if p.profiler_overhead is None else f"{p.profiler_overhead:+.0%}"
        cells = " | ".join(
            f"{p.seconds.by_category()[c]:.2f} s ({p.shares[c]:.0%})" for c in CATEGORIES
        )
        lines.append(f"| {v.name} | {p.seconds.step:.2f} s | {cells} | {overhead} | `{p.tb_run}` |")
    lines += [
        "",
        "| step | data | compute | other | saving came from |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for step in summary.steps:
        where = step.where
        if not where:
            continue
        cells = " | ".join(
            f"{where.seconds_change[c]:+.2f} s ({where.shares[c][0]:.0%} -> "
            f"{where.shares[c][1]:.0%})"
            for c in CATEGORIES
        )
        lines.append(f"| {step.name} | {cells} | {came_from(where)} |")
    return lines


def _floor_lines(summary: Summary) -> list[str]:
    floor = summary.variants[0].floor
    vendor = floor.vendor_peak_tflops
    lines = [
        f"Peak used: {floor.peak_tflops:.3g} TFLOP/s ({floor.peak_source}); measured "
        f"matmul peak {floor.measured_peak_tflops:.3g} TFLOP/s in {floor.peak_dtype}"
        + (
            f"; vendor figure {vendor:g} TFLOP/s"
            if vendor
            else "; no vendor figure for this device"
        )
        + ". Minimum time = FLOPs per image (forward+backward, `torch.utils.flop_counter`) x "
        "training images x epochs / peak.",
        "",
        "| variant | FLOPs/image | training FLOPs | floor | measured (median run) | efficiency |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in chain_variants(summary):
        f = v.floor
        lines.append(
            f"| {v.name} | {f.flops_per_image:.3g} | {f.total_flops:.3g} | "
            f"{f.floor_s:.2f} s | {v.timing.total_s.median:.2f} s | "
            f"{f.efficiency:.1%} |"
        )
    return lines


def _wall(summary: Summary) -> str:
    sessions = summary.sessions
    if not sessions.count:
        return "- Wall time: not recorded (no sessions.jsonl)."
    minutes, seconds = divmod(round(sessions.wall_s), 60)
    return (
        f"- Wall time of the job: {minutes} min {seconds:02d} s over {sessions.count} "
        f"session(s) (data loading, timed rounds and profiled passes; "
        f"{'finished' if sessions.finished else 'not finished'})."
    )


# ----------------------------------------------------------------------------- why each step saves


def _start_line(summary: Summary) -> list[str]:
    """A `--from` chain: what its baseline already has, and where the article stood then."""
    if not summary.start:
        return []
    names = ", ".join(f"`{name}`" for name in summary.start)
    article = summary.article
    where = (
        f"the article's step {article.start_step} ({article.baseline_s:g} s on "
        f"{on_a(article.device.split(', ')[0])})"
        if article.start_step is not None
        else "the article's baseline"
    )
    return [
        f"- Starts after {len(summary.start)} step(s) (`--from`): the baseline and the control "
        f"are the recipe with {names} applied; its article figures start at {where}."
    ]


def _hosts_line(summary: Summary) -> list[str]:
    """A `--ray` job: where its rounds ran and how many ran at once per host."""
    hosts = summary.hosts
    if not hosts:
        return []
    parts = [
        f"{host}: {len(h.rounds)} round(s), at most {h.rounds_at_once} at once on "
        f"{h.cores_per_round} core(s) each, {len(h.devices)} device(s)"
        for host, h in hosts.items()
    ]
    return [
        "- Rounds on Ray, each on one worker and one device (how many rounds ran at once per "
        f"host; docs/scale-out.md): {'; '.join(parts)}"
    ]


def _passes_note(summary: Summary) -> str:
    """How many profiled passes the breakdown rests on, and the rule that names a category."""
    profiled = [v.profile for v in summary.variants if v.profile is not None]
    if not profiled:
        return ""
    passes = min(p.passes for p in profiled)
    if passes == 1:
        return (
            "One profiled pass per variant (`--profile-passes 1`): there is no spread to judge "
            "a change by, so a category is named only when its fall per step exceeds what the "
            "profiler itself added to the two passes (profiled minus unprofiled steps); "
            'otherwise "unclear". Run with `--profile-passes 3` for medians and spread.'
        )
    chance = math.factorial(passes) ** 2 / math.factorial(2 * passes)
    return (
        f"Medians of {passes} profiled passes per variant. A category is named only when its "
        "fall per step exceeds what the profiler itself added to the two variants' passes and "
        "every pass of the later variant spent less per step in it than every pass of the "
        f"earlier one (by chance alone: {chance:.0%} for a category that did not change); "
        'otherwise "unclear".'
    )


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _contention_lines(summary: Summary) -> list[str]:
    """Cores used by the main process and the DataLoader workers during the recorded steps,
    and what each step that changed the workers did to them, in words from the numbers."""
    chain = [v for v in summary.variants if v.profile is not None and v.profile.cpu is not None]
    if not chain:
        return []
    lines = [
        "| variant | worker processes | workers' cores | main process cores | machine "
        "(usable) cores | without the profiler: workers / main |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in chain:
        cpu = v.profile.cpu
        quiet = cpu.unprofiled
        processes = "n/a" if cpu.worker_processes is None else f"{cpu.worker_processes:g}"
        lines.append(
            f"| {v.name} | {processes} | {_cores(cpu.workers_cores)} "
            f"| {_cores(cpu.main_cores)} "
            f"| {cpu.machine_cores:g} ({cpu.usable_cores:g}) "
            f"| {_cores(quiet and quiet.workers_cores)} / {_cores(quiet and quiet.main_cores)} |"
        )
    lines.append("")
    order = chain_variants(summary)
    for before, after, step in zip(order, order[1:], summary.steps, strict=False):
        reading = contention_reading(
            step.name,
            before.profile.cpu if before.profile else None,
            after.profile.cpu if after.profile else None,
        )
        if reading:
            lines.append(f"- {reading}")
    return lines


def _workers_phrase(cpu: CpuUse) -> str:
    count = cpu.worker_processes
    if not count:
        return "no worker process ran (the main thread loaded the data)"
    plural = "es" if count != 1 else ""
    return f"{count:.0f} worker process{plural} used {cpu.workers_cores:.2f} cores"


def contention_reading(name: str, before: CpuUse | None, after: CpuUse | None) -> str:
    """'single_worker: before it, 16 worker processes used 1.10 cores during the recorded
    steps on a 2-core machine, the main process 0.85; after it, 1 worker process used 0.30
    cores, the main process 1.60.' Empty when the step did not change the worker processes
    or a figure is missing (no /proc)."""
    if not before or not after or None in (before.workers_cores, after.workers_cores):
        return ""
    if before.worker_processes == after.worker_processes:
        return ""
    reading = (
        f"{name}: before it, {_workers_phrase(before)} during the recorded steps on a "
        f"{before.machine_cores:g}-core machine, the main process {before.main_cores:.2f}; "
        f"after it, {_workers_phrase(after)}, the main process {after.main_cores:.2f}."
    )
    idle = [cpu for cpu in (before, after) if cpu.worker_processes and cpu.workers_cores < 0.05]
    if idle:
        # Workers prefetch 2 batches each: a short pass is loaded before its first step ends.
        reading += (
            " Workers that sit idle in the recorded steps did their work before them, at the "
            "start of the pass (starting, and prefetching two batches each): that CPU time is "
            "the runs' child CPU counter in the results table, not contention during steps."
        )
    return reading


OP_DIFF_SHOWN = 8


def _op_diff_lines(summary: Summary) -> list[str]:
    """Per step, the operators whose calls or self time per recorded step changed most."""
    steps = [s for s in summary.steps if s.op_diff]
    if not steps:
        return []
    passes = min(v.profile.passes for v in summary.variants if v.profile is not None)
    lines = [
        "## Operator diff per step",
        "",
        "Per recorded training step, from torch.profiler's per-operator aggregation of each "
        "pass (medians over passes): calls are exact counts; self times are noisy"
        + (
            ": with one profiled pass none is called a cause."
            if passes == 1
            else f": a time change is marked * only when every one of the {passes} passes "
            "after it is on one side of every pass before it."
        )
        + " Worker processes are not traced: work done in DataLoader workers (per-sample "
        "decoding, augmentation and its RNG) is absent from these counts.",
        "",
    ]
    for step in steps:
        lines += [
            f"**{step.name}**",
            "",
            "| operator | calls before | calls after | change | self ms before | self ms after "
            "| change |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in step.op_diff[:OP_DIFF_SHOWN]:
            mark = " *" if row.beyond_spread else ""
            lines.append(
                f"| `{row.name}` | {row.calls_before:.3g} | {row.calls_after:.3g} | "
                f"{row.calls_change:+.3g} | {1e3 * row.self_s_before:.2f} | "
                f"{1e3 * row.self_s_after:.2f} | {1e3 * row.self_s_change:+.2f}{mark} |"
            )
        note = rng_note(step)
        lines += ["", *([note, ""] if note else [])]
    return lines


RNG_OPERATORS = ("aten::randint", "aten::rand", "aten::random_", "aten::uniform_")


def rng_note(step: StepSummary) -> str:
    """Where the RNG calls of an augmentation step went, from the diff: traced (their calls
    changed in the main process) or not (drawn in worker processes, or outside the recorded
    steps)."""
    rng_calls = step.counter_deltas.get("rng_calls", 0)
    if rng_calls == 0:
        return ""
    traced = [r for r in step.op_diff if r.name.startswith(RNG_OPERATORS)]
    if traced:
        moves = ", ".join(f"`{r.name}` {r.calls_change:+g}" for r in traced)
        return f"RNG operator calls per step in the traced process: {moves}."
    return (
        f"The runs' RNG calls changed by {rng_calls:+,.0f}, but no RNG "
        "operator call changed in the trace: per-sample draws were made in DataLoader worker "
        "processes (not traced), and bulk draws once at the start of each epoch, before the "
        "recorded steps. With a main-thread loader (`train_workers=0`) per-sample draws would "
        "show here as `aten::randint`/`aten::rand` calls."
    )


def _breakdown_lines(summary: Summary) -> list[str]:
    """The passes note, the breakdown chart and the CPU the workers took."""
    if not any(v.profile is not None for v in summary.variants):
        return []
    lines = [_passes_note(summary), ""]
    if not has_timed_phases(summary):  # with phases the breakdown is the timed region's, above
        lines += [f"![breakdown]({outputs.BREAKDOWN}.png)", ""]
    contention = _contention_lines(summary)
    if contention:
        lines += [
            "### Who used the cores",
            "",
            "CPU seconds per second of wall time (cores kept busy) during the recorded "
            "training steps, read from /proc for the DataLoader worker processes, which the "
            "trace does not show; the last column is the same over the pass's unprofiled "
            "steps. Workers that take the cores slow the training loop's operators: on a CPU "
            "that shows up as compute, not as waiting for data.",
            "",
            *contention,
            "",
        ]
    return lines


def rounds_lines(summary: Summary) -> list[str]:
    """Disturbed rounds, and why the job ran the rounds it ran (adaptive or fixed)."""
    lines = []
    stop, disturbed = summary.rounds_stop, summary.disturbed_rounds
    if disturbed:
        replaced = (
            "and replaced by as many more rounds"
            if stop.reason is not None or summary.adaptive
            else f"and not replaced (the job ran {stop.rounds_run} round(s) of "
            f"{stop.planned_rounds} planned: it was interrupted, or recorded by a lab that "
            "did not yet replace disturbed rounds)"
        )
        lines.append(
            f"- **Disturbed rounds: {len(disturbed)}** of {summary.rounds_run}, left out of "
            f"every comparison {replaced}; {disturbed_evidence(disturbed)}. A run is disturbed "
            "when it is more than 5 robust scales of this job's residuals and 25% off what its "
            "round and variant predict (docs/statistics.md)."
        )
    adaptive = summary.adaptive
    if adaptive is not None:
        lines.append(adaptive_line(adaptive))
    elif stop.reason == REPLACEMENT_CAP:
        lines.append(
            f"- **Fewer clean rounds than planned** ({stop.clean_rounds} of "
            f"{stop.planned_rounds}): {ROUND_STOP_REASONS[REPLACEMENT_CAP]}."
        )
    return lines


def _rounds_run(summary: Summary) -> str:
    """'9 round(s)', or '7 clean round(s) of 9' when disturbed rounds were left out."""
    if summary.rounds_run == summary.rounds:
        return f"{summary.rounds} round(s)"
    return f"{summary.rounds} clean round(s) of {summary.rounds_run}"


def render_report(summary: Summary) -> str:
    meta = summary.meta_or_empty()
    chain = len(summary.steps) + 1
    extra = len(summary.variants) - chain
    has_control = summary.control is not None
    extras = ", ".join(
        part
        for part in (
            "the control" if has_control else "",
            f"{extra - has_control} leave-one-out" if extra - has_control else "",
        )
        if part
    )
    lines = [
        f"# Ablation report: preset `{meta.preset}`",
        "",
        "Generated by `python -m lab.report` from the records; every number below is measured.",
        "",
        "## What was run",
        "",
        f"- Command: `{meta.command}`",
        f"- Device: {meta.device_name} ({meta.cpu_cores} cores)",
        f"- Versions: lab {meta.lab_version}, torch {meta.torch_version}, "
        f"Python {meta.python_version}; git {meta.git_revision}, "
        f"code {meta.code_hash}",
        f"- Dates: {summary.first_run_date} to {summary.last_run_date}; "
        f"{_rounds_run(summary)}, each running all {len(summary.variants)} variant(s) "
        f"({chain} cumulative{', ' + extras if extras else ''}) in an order "
        f"shuffled per round (order seed {meta.order_seed}); "
        f"{summary.warmup_runs} warm-up run(s) discarded",
        _wall(summary),
        *_start_line(summary),
        *_hosts_line(summary),
        "- Time = training + per-epoch test evaluation (DAWNBench's timed region); decoding and "
        "one-off preprocessing are outside it and reported apart.",
        "",
        "## Noise floor and power",
        "",
        *_noise_floor(summary),
        "",
        "## Results",
        "",
        *(_table(summary) if summary.steps else _reading(summary)),
        "",
        _sum_check(summary) if summary.steps else "",
        "",
        "Saved = the paired comparison with the previous variant within each round: the "
        f"geometric mean of the per-round time ratios, with its {CONFIDENCE:.0%} Student-t "
        "interval over rounds (docs/statistics.md); in seconds at the baseline's scale "
        "(time (paired) = the baseline's median run times the chained ratios). "
        "⚑ = counters did not move as the step says. Accuracy change = the paired change in "
        "final test accuracy against the previous variant: the mean of the per-round "
        f"differences, in points, with its {CONFIDENCE:.0%} Student-t interval; held, fell or "
        f"rose (significantly). Saving came from = the phases of the timed region whose paired "
        "saving is significant, largest first (next section; for records without phases, "
        f"the profiled passes' category). A variant that did not learn ({LEARNED_RULE}) says "
        "so beside its accuracy and in its step's time verdict.",
        "",
        f"![waterfall]({outputs.WATERFALL}.png)",
        "",
        *_rule_table(summary),
        *_leave_one_out_table(summary),
        "## Where each step's seconds went",
        "",
        *_phase_lines(summary),
        "## Where the time goes",
        "",
        "From the profiled passes, apart from the timed runs: the recorded training "
        "steps of a pass in steady state (data = waiting for the next batch, compute = forward + "
        "backward + optimiser, other = the rest: host-to-device copy, Python); profiler overhead "
        "= those steps against the same number of unprofiled steps of the same pass. "
        "Open the traces with `python -m lab.tensorboard <out>`.",
        "",
        *_where_table(summary),
        "",
        *_breakdown_lines(summary),
        *_op_diff_lines(summary),
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


def _optional_records(path: Path) -> list[dict[str, Any]]:
    return read_records(path) if path.exists() else []


def write_report(out: Path) -> Summary:
    """summary.json, the charts and report.md in `out`, from its records."""
    records = read_records(out / outputs.RESULTS)
    if not any(not r["warmup"] for r in records):
        raise LabError(f"{out / outputs.RESULTS}: no timed runs to report")
    summary = build_summary(
        records,
        read_plan(out / outputs.PLAN),
        _optional_records(out / outputs.PROFILE),
        _optional_records(out / outputs.SESSIONS),
    )
    (out / outputs.SUMMARY).write_text(summary.to_json())
    draw_waterfall(summary, out)
    draw_breakdown(summary, out)
    draw_step_phases(summary, out)
    if summary.leave_one_out:
        draw_leave_one_out(summary, out)
    (out / outputs.REPORT).write_text(render_report(summary))
    write_tensorboard_logs(out, summary, records)
    return summary
