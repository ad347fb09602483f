"""`summary.json`: per-variant timings, per-step paired savings with intervals, the control, the
job's power, leave-one-out savings and interactions, counter deltas, profiles and the floor.

Built from the records and the job's plan alone (warm-up runs excluded), so any report can be
regenerated, and says the same whatever the registry says today: what a report states about a
step (its title, the counters it promises to move, the article's figure) is read from the
plan's `step_facts` and `article`, stored when the job started. The summary holds data; the
words are the render layer's. How the numbers are compared is `lab.analysis.stats` and
docs/statistics.md; in short, every saving is a paired comparison of two variants within each
round.

Seconds. A step's saving in percent is of the variant before it. In seconds it is stated at the
baseline's scale: the chain T0 = median baseline time, T_k = T_(k-1) x ratio_k gives every
cumulative variant a paired time estimate, and step k saved T_(k-1) - T_k. These telescope, so
the steps' savings add up exactly to T0 - T_final (the report shows the sum).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from lab.analysis.rounds import RoundCall, adaptive_rule, next_round, replacement_cap
from lab.analysis.stats import (
    Ratio,
    median,
    minimum_detectable_pct,
    paired_difference,
    pooled_log_sd,
    ratio_from_logs,
)
from lab.recipe.counters import COUNTERS, counter_values
from lab.recipe.vocabulary import (
    BASELINE,
    CHAIN_ROLES,
    CLASSES,
    CONTROL,
    LEAVE_ONE_OUT,
    PHASES,
    TRAIN_EVAL,
    TRAIN_PREPROCESS,
    WHITEN_TRAIN_FINAL_EVAL,
)
from lab.records.floor import floor_seconds
from lab.records.plan import JobSpec, plan_job
from lab.records.summary import (
    SUMMARY_SCHEMA_VERSION,
    Accuracy,
    Adaptive,
    AdaptiveRuleSummary,
    ArticleTotals,
    DisturbedRound,
    DisturbedRun,
    Floor,
    Host,
    Meta,
    Power,
    Profile,
    RoundsStop,
    Sample,
    Sessions,
    Summary,
    Timing,
    Total,
    VariantSummary,
)
from lab.records.summary_step import (
    AccuracyChange,
    ArticleStep,
    Attribution,
    Comparison,
    Estimate,
    Expectation,
    Interaction,
    NoEffect,
    OperatorChange,
    PhaseSaving,
    StepSummary,
    VariantComparison,
    Where,
    comparison_fields,
)
from lab.records.typed import from_jsonable

TIMINGS = (  # Timing's fields
    "total_s",
    "train_s",
    "eval_s",
    "preprocess_s",
    "whitening_s",
    "final_eval_s",
)
CATEGORIES = ("data", "compute", "other")
META_KEYS = tuple(Meta.__dataclass_fields__)  # of the first timed run
CHANCE = 1 / CLASSES  # the test accuracy of a guess
LEARNED_AT = 2 * CHANCE  # a variant learned when its median accuracy is at least this


# ----------------------------------------------------------------------------- variants


def chain_variants(summary: Summary) -> list[VariantSummary]:
    """The summary's baseline and cumulative variants, in the order the steps were applied."""
    return summary.chain()


def _sample(records: list[dict[str, Any]], key: str) -> Sample:
    values = [_timing(r["measurements"], key) for r in records]
    return Sample(median=median(values), values=values)


def _timing(measurements: dict[str, Any], key: str) -> float:
    """A part of a run's time: a recorded figure, or the last epoch's evaluation (kept per
    epoch in every record); a whitening not measured apart (early schema-2 records) as 0."""
    if key == "final_eval_s":
        return measurements["epochs"][-1]["eval_s"]
    value = measurements[key]
    return 0.0 if value is None else value


def learned(median_accuracy: float) -> bool:
    """Whether a variant learned: its median final test accuracy is at least twice chance (20%
    for CIFAR-10's 10 classes). Below that a recipe is not clearly above chance, and its time
    is the time of a recipe that does not learn at this scale. Twice chance, not a test against
    chance: 500 test images make 14% significantly above 10%, which is no recipe learning."""
    return median_accuracy >= LEARNED_AT


def summarise_variant(name: str, records: list[dict[str, Any]], floor: Floor) -> VariantSummary:
    first = records[0]
    accuracies = [r["measurements"]["final_test_accuracy"] for r in records]
    counters = defaultdict(list)
    for record in records:
        for key, value in counter_values(record).items():
            counters[key].append(value)
    plan_match = all(
        r["measurements"].get(key) == expected
        for r in records
        for key, expected in r["expected"].items()
    )
    return VariantSummary(
        name=name,
        role=first["role"],
        steps=first["steps"],
        runs=len(records),
        rounds=[r["round"] for r in records],
        timing=Timing(**{key: _sample(records, key) for key in TIMINGS}),
        accuracy=Accuracy(
            median=median(accuracies),
            values=accuracies,
            target=first["config"]["target_accuracy"],
            reached=sum(r["measurements"]["reached_target"] for r in records),
            runs=len(records),
        ),
        learned=learned(median(accuracies)),
        phases_s=_phases(records),
        counters={key: median(values) for key, values in counters.items()},
        expected_counters=first["expected"],
        counters_match_plan=plan_match,
        params=first["params"],
        flops_per_image=first["flops_per_image"],
        precision=first["measurements"]["precision"],
        device=first["measurements"]["device"],
        config=first["config"],
        floor=floor,
    )


def _phases(records: list[dict[str, Any]]) -> dict[str, Sample] | None:
    """Seconds per phase of the timed region over the runs (vocabulary.PHASES' order); None
    when any run's record predates phase accounting."""
    if not all("phases_s" in r["measurements"] for r in records):
        return None
    return {
        phase: Sample(
            median=median(values := [r["measurements"]["phases_s"][phase] for r in records]),
            values=values,
        )
        for phase in PHASES
        if all(phase in r["measurements"]["phases_s"] for r in records)
    }


def phase_savings(before: VariantSummary, after: VariantSummary) -> dict[str, PhaseSaving] | None:
    """Per phase of the timed region, the seconds `after` saves against `before`: per round in
    which both ran, before - after; their mean and its Student-t interval, as the accuracy
    change is paired (docs/statistics.md). Means of differences add up: the phases' estimates
    sum to the mean per-round saving of the whole timed region, since every run's phases sum
    to its `total_s`. None when either variant's records lack phases."""
    if before.phases_s is None or after.phases_s is None:
        return None
    return {
        phase: paired_phase_saving(
            dict(zip(before.rounds, before.phases_s[phase].values, strict=True)),
            dict(zip(after.rounds, after.phases_s[phase].values, strict=True)),
        )
        for phase in before.phases_s
        if phase in after.phases_s
    }


def paired_phase_saving(before: dict[int, float], after: dict[int, float]) -> PhaseSaving:
    """One phase's seconds saved, from each variant's seconds by round: before - after over
    the rounds both ran, the mean and its Student-t interval."""
    common = sorted(set(before) & set(after))
    # paired_difference gives its second argument minus its first: before - after here.
    saved = paired_difference([after[r] for r in common], [before[r] for r in common])
    low, high = saved.ci95 if saved.ci95 is not None else (None, None)
    return PhaseSaving(
        estimate_s=saved.estimate, low_s=low, high_s=high, significant=saved.significant
    )


# What each timing rule adds up, from the parts a record keeps apart (Timing's fields).
RULE_PARTS: dict[str, tuple[str, ...]] = {
    TRAIN_EVAL: ("total_s",),  # the lab's timed region, recorded as one figure
    TRAIN_PREPROCESS: ("train_s", "preprocess_s"),
    WHITEN_TRAIN_FINAL_EVAL: ("whitening_s", "train_s", "final_eval_s"),
}


def _times_by_round(variant: VariantSummary, rule: str = TRAIN_EVAL) -> dict[int, float]:
    """Seconds per round on a timing rule; the lab's timed region is TRAIN_EVAL."""
    parts = [getattr(variant.timing, key).values for key in RULE_PARTS[rule]]
    values = [sum(run) for run in zip(*parts, strict=True)]
    return dict(zip(variant.rounds, values, strict=True))


def paired_logs(
    before: VariantSummary, after: VariantSummary, rule: str = TRAIN_EVAL
) -> dict[int, float]:
    """log(t_after / t_before) per round in which both ran."""
    a, b = _times_by_round(before, rule), _times_by_round(after, rule)
    return {r: float(np.log(b[r] / a[r])) for r in sorted(set(a) & set(b))}


def paired(before: VariantSummary, after: VariantSummary, rule: str = TRAIN_EVAL) -> Ratio:
    logs = paired_logs(before, after, rule)
    return ratio_from_logs(list(logs.values()))


def paired_accuracy(before: VariantSummary, after: VariantSummary) -> AccuracyChange:
    """The change in final test accuracy from `before` to `after`, in points: per round in
    which both ran, after - before; their mean and its Student-t interval (the rounds the time
    comparison pairs; docs/statistics.md)."""
    a = dict(zip(before.rounds, before.accuracy.values, strict=True))
    b = dict(zip(after.rounds, after.accuracy.values, strict=True))
    common = sorted(set(a) & set(b))
    change = paired_difference([100 * a[r] for r in common], [100 * b[r] for r in common])
    low, high = change.ci95 if change.ci95 is not None else (None, None)
    return AccuracyChange(
        estimate_pts=change.estimate,
        low_pts=low,
        high_pts=high,
        significant=change.significant,
        verdict=change.verdict,
        rounds=change.rounds,
    )


def _estimate(saving: dict[str, Any]) -> Estimate:
    return Estimate(**saving)


def comparison(ratio: Ratio, before_s: float) -> Comparison:
    """The summary's shape of a saving: percent of the earlier variant, and seconds for an
    earlier variant of `before_s` (the chain's paired estimate)."""
    return Comparison(
        saved_pct=_estimate(ratio.saved_pct()),
        saved_s=_estimate(ratio.saved_s(before_s)),
        ratio=ratio.ratio,
        rounds=ratio.rounds,
    )


# ----------------------------------------------------------------------------- steps


def _expectation_holds(expected: str, before: float, after: float) -> bool:
    if expected == "down":
        return after < before
    if expected == "up":
        return after > before
    if expected == "zero":
        return after == 0
    return after == before  # "same": used for exact counters only


def summarise_step(
    before: VariantSummary,
    after: VariantSummary,
    ratio: Ratio,
    before_s: float,
    plan: dict[str, Any],
    where: Where | None,
    operators: list[OperatorChange] | None,
) -> StepSummary:
    """The step that turns `before` into `after`, described by its facts in the plan."""
    name = after.steps[-1]
    facts = plan["step_facts"][name]
    shared = [key for key in COUNTERS if key in before.counters and key in after.counters]
    checks = [
        Expectation(
            counter=counter,
            expected=expected,
            before=before.counters[counter],
            after=after.counters[counter],
            holds=_expectation_holds(expected, before.counters[counter], after.counters[counter]),
        )
        for counter, expected in facts["expects"]
        if counter in shared
    ]
    return StepSummary(
        name=name,
        title=facts["title"],
        variant=after.name,
        **comparison_fields(comparison(ratio, before_s)),
        time_s=before_s * ratio.ratio,
        one_off_s=after.timing.preprocess_s.median - before.timing.preprocess_s.median,
        counter_deltas={key: after.counters[key] - before.counters[key] for key in shared},
        expectations=checks,
        flagged=any(not c.holds for c in checks) or not after.counters_match_plan,
        accuracy_change=paired_accuracy(before, after),
        phase_savings=phase_savings(before, after),
        no_effect_expected=_no_effect_expected(facts, after),
        article=_article_step(facts, plan["article"], before, after),
        where=where,
        op_diff=operators,
    )


def _no_effect_expected(facts: dict[str, Any], after: VariantSummary) -> NoEffect | None:
    """A step that changes only models of one precision, on runs that trained in another: no
    change of work is expected on this device (None otherwise)."""
    device = facts.get("needs_device")  # plans from before chapter 2 lack it
    if device is not None and not after.device.startswith(device):
        return NoEffect(
            needs_precision=None,
            precision=after.precision,
            needs_device=device,
            device=after.device,
        )
    needs = facts["needs_precision"]
    if needs is None or after.precision == needs:
        return None
    return NoEffect(needs_precision=needs, precision=after.precision)


def _article_step(
    facts: dict[str, Any], series: dict[str, Any], before: VariantSummary, after: VariantSummary
) -> ArticleStep:
    """The article's figure for the step and, on the article's own timing rule, ours."""
    if facts["article_step"] is None:
        return ArticleStep(step=None, saved_s=None, shared_with=[])
    claim = next(s for s in series["steps"] if s["number"] == facts["article_step"])
    ours = paired(before, after, claim["rule"])
    before_rule_s = median(list(_times_by_round(before, claim["rule"]).values()))
    return ArticleStep(
        step=claim["number"],
        part=claim["part"],
        time_s=claim["time_s"],
        saved_s=claim["saved_s"],
        saved_pct=100.0 * claim["saved_s"] / (claim["time_s"] + claim["saved_s"]),
        accuracy=claim["accuracy"],
        rule=claim["rule"],
        source=claim["source"],
        shared_with=facts["shared_with"],
        ours_on_rule=comparison(ours, before_rule_s),
        # Plans from before chapter 2 stored neither: every step was a Part's, on a V100.
        where=claim.get("where", f"Part {claim['part']}"),
        device=claim.get("device", series["device"]),
    )


def leave_one_out(
    steps: list[StepSummary],
    chain: list[VariantSummary],
    by_name: dict[str, VariantSummary],
    final_s: float,
) -> list[StepSummary]:
    """Per step, the saving of adding it last (all steps but it -> all steps) and its
    interaction: cumulative saving minus leave-one-out saving, in percentage points, and its
    paired test: per round, the log-ratio of the cumulative comparison minus that of the
    leave-one-out one, whose geometric mean (`ratio`, the cumulative time ratio over the
    leave-one-out one) and 95% interval (`ci95`) give the verdict. The steps, with both."""
    final = chain[-1]
    result = []
    for index, step in enumerate(steps):
        without = by_name.get(f"-{step.name}")
        if without is None and index == len(steps) - 1:
            without = chain[-2]  # all but the last step is the chain's previous variant
        if without is None:
            result.append(step)
            continue
        loo_logs = paired_logs(without, final)
        cumulative_logs = paired_logs(chain[index], chain[index + 1])
        ratio = ratio_from_logs(list(loo_logs.values()))
        common = sorted(set(loo_logs) & set(cumulative_logs))
        interaction = ratio_from_logs([cumulative_logs[r] - loo_logs[r] for r in common])
        added_last = VariantComparison(
            variant=without.name,
            **comparison_fields(comparison(ratio, final_s / ratio.ratio)),
            accuracy_change=paired_accuracy(without, final),
            phase_savings=phase_savings(without, final),
        )
        result.append(
            replace(
                step,
                leave_one_out=added_last,
                interaction=Interaction(
                    pct_points=step.saved_pct.estimate - added_last.saved_pct.estimate,
                    ratio=interaction.ratio,
                    ci95=None if interaction.ci95 is None else list(interaction.ci95),
                    verdict=interaction.verdict,
                    rounds=interaction.rounds,
                    cumulative_after=chain[index].name,  # the variant the step follows in order
                    is_last_step=without.name == chain[index].name,
                    # True when, with every other step in, the step changes no config field: a
                    # later step overrides it.
                    same_config=without.config == final.config,
                ),
            )
        )
    return result


# ----------------------------------------------------------------------------- profiles, floor


def profile_summary(profile: dict[str, Any]) -> dict[str, Any]:
    """Where a variant's step time goes, and what the profiler itself cost (one pass, in the
    shape of `Profile`'s fields; `passes_summary` adds the rest over passes)."""
    breakdown = profile["breakdown"]
    return {
        "tb_run": profile["tb_run"],
        "trace": profile["trace"],
        "train_steps": breakdown["train_steps"],
        "seconds": {
            "step": breakdown["step_s"],
            **{c: breakdown[f"{c}_s"] for c in CATEGORIES},
            "h2d": breakdown["h2d_s"],
            "eval": breakdown["eval_s"],
            "preprocess": breakdown["preprocess_s"],
        },
        "shares": breakdown["shares"],
        "profiled_steps_s": profile["profiled_steps_s"],
        "unprofiled_steps_s": profile["unprofiled_steps_s"],
        "profiler_overhead": profile["profiler_overhead"],
    }


def floor_summary(records: list[dict[str, Any]], measured_total_s: float) -> Floor:
    """The article's minimum-time calculation for this variant on this device."""
    first = records[0]
    peak = first["peak"]
    floor_s = floor_seconds(first["total_flops"], peak["used_tflops"])
    return Floor(
        flops_per_image=first["flops_per_image"],
        total_flops=first["total_flops"],
        peak_tflops=peak["used_tflops"],
        peak_source=peak["source"],
        measured_peak_tflops=peak["measured_tflops"],
        vendor_peak_tflops=peak["vendor_tflops"],
        peak_dtype=peak["dtype"],
        floor_s=floor_s,
        efficiency=floor_s / measured_total_s if measured_total_s else None,
    )


def where_saving_came_from(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> Where | None:
    """Per category, how the profiled steps' seconds moved (medians over passes), and the
    category named by `attribute`'s rule, or "unclear", with the rule's reason code; from the
    two variants' `passes_summary` (None when either is unprofiled)."""
    if before is None or after is None:
        return None
    attribution = attribute(before, after)
    return Where(
        seconds_change={c: after["seconds"][c] - before["seconds"][c] for c in CATEGORIES},
        shares={c: [before["shares"][c], after["shares"][c]] for c in CATEGORIES},
        came_from=attribution.pop("came_from"),
        reason=attribution.pop("reason"),
        attribution=Attribution(**attribution),
    )


# ----------------------------------------------------------------------------- the whole job


def _power(comparisons: list[Ratio], rounds: int, excluded_rounds: int = 0) -> Power:
    """The job's paired noise (pooled over every comparison) and the smallest saving it
    detects with 80% power at its number of (clean) rounds."""
    log_sd, dof = pooled_log_sd(comparisons)
    mde = minimum_detectable_pct(log_sd, rounds) if log_sd is not None else None
    return Power(
        paired_sd_pct=None if log_sd is None else 100.0 * log_sd,
        degrees_of_freedom=dof,
        rounds=rounds,
        excluded_rounds=excluded_rounds,
        min_detectable_pct=mde,
        power=0.8,
        test="paired t on per-round log time ratios, two-sided 5%",
    )


def _rounds_stop(call: RoundCall, job: JobSpec) -> RoundsStop:
    """Why the job ran the rounds it ran: the rounds rule asked again of the records, so the
    answer is the engine's own (`reason` null: the rule would run another round, as for an
    interrupted job, or one whose disturbed rounds were never replaced)."""
    return RoundsStop(
        reason=call.reason if call.stop else None,
        planned_rounds=job.rounds,
        rounds_run=call.state.rounds_run,
        clean_rounds=call.state.clean_rounds,
        replacement_cap=None if call.decision else replacement_cap(job.rounds),
    )


def _adaptive(call: RoundCall, job: JobSpec) -> Adaptive | None:
    """An adaptive job's rule and where it stood at the end (None for a job of fixed rounds)."""
    rule = adaptive_rule(job)
    if rule is None or call.decision is None:
        return None
    decision = call.decision
    return Adaptive(
        rule=AdaptiveRuleSummary(**rule.to_dict()),
        reason=decision.reason,
        target_mde_pct=rule.target_mde_pct,
        min_detectable_pct=decision.min_detectable_pct,
        stopping_mde_pct=decision.stopping_mde_pct,
        clean_rounds=decision.clean_rounds,
        rounds_run=decision.rounds_run,
        spent_s=call.state.elapsed_s,
        budget_s=rule.budget_s,
        round_s=decision.round_s,
    )


def _control_ratio(variants: dict[str, VariantSummary]) -> tuple[str, Ratio] | None:
    """The control's name and its paired ratio to the baseline (None without a control)."""
    control = next((v for v in variants.values() if v.role == CONTROL), None)
    baseline = next((v for v in variants.values() if v.role == BASELINE), None)
    if control is None or baseline is None:
        return None
    return control.name, paired(baseline, control)


def _article_totals(
    steps: list[StepSummary], series: dict[str, Any], start_step: int | None = None
) -> ArticleTotals:
    """The article's times for the stretch of the series this job covers (the first part's,
    for a job of no step the article took), from the article's baseline or, for a `--from`
    chain, from the step it starts after."""
    numbers = [s.article.step for s in steps if s.article.step is not None]
    first_part = min(s["part"] for s in series["steps"] if s["part"] is not None)
    default = max(s["number"] for s in series["steps"] if s["part"] == first_part)
    last = max(numbers, default=default)
    times = {s["number"]: s["time_s"] for s in series["steps"]}
    # Plans from before chapter 2 name one device for the whole series.
    devices = {s["number"]: s.get("device", series["device"]) for s in series["steps"]}
    restarts = {
        s["number"]: s["before_s"]
        for s in series["steps"]
        if s["number"] - 1 in devices and devices[s["number"] - 1] != devices[s["number"]]
    }
    first = (start_step or 0) + 1
    # A chain that starts where a chapter does starts from its re-measured time.
    start_s = restarts.get(first, times[start_step or 0])
    stretch = list(
        dict.fromkeys(
            devices[k] for k in range(first if first in restarts else first - 1, last + 1)
        )
    )
    return ArticleTotals(
        device=", then ".join(stretch),
        times_s={str(k): v for k, v in times.items()},
        labels={str(s["number"]): s["label"] for s in series["steps"]},
        rules={str(s["number"]): s["rule"] for s in series["steps"]},
        last_step=last,
        baseline_s=start_s,
        final_s=times[last],
        saved_s=start_s - times[last],
        start_step=start_step,
        devices={str(k): v for k, v in devices.items()},
        restarts_s={str(k): v for k, v in restarts.items()},
    )


def _sessions(sessions: list[dict[str, Any]]) -> Sessions:
    return Sessions(
        count=len(sessions),
        wall_s=sum(s["wall_s"] for s in sessions),
        finished=bool(sessions) and sessions[-1]["finished"],
    )


def _hosts(timed: list[dict[str, Any]]) -> dict[str, Host] | None:
    """Per host of a `--ray` job (records with `host`): its timed runs and rounds, the most
    rounds that ran there at once, and the cores a round had; None for a local job."""
    by_host: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in timed:
        if "host" in record:
            by_host[record["host"]].append(record)
    return {
        host: Host(
            runs=len(runs),
            rounds=sorted({r["round"] for r in runs}),
            rounds_at_once=max(r["rounds_on_host"] for r in runs),
            cores_per_round=max(len(r["cores"]) for r in runs),
            devices=sorted({r["device_id"] for r in runs}),
        )
        for host, runs in sorted(by_host.items())
    } or None


def _variants(
    by_variant: dict[str, list[dict[str, Any]]], profiles: dict[str, dict[str, Any]]
) -> dict[str, VariantSummary]:
    """Each variant over its timed runs, with its floor and, when profiled, its profile."""
    summaries = {}
    for name, runs in by_variant.items():
        floor = floor_summary(runs, median([r["measurements"]["total_s"] for r in runs]))
        variant = summarise_variant(name, runs, floor)
        if name in profiles:
            variant = replace(variant, profile=from_jsonable(Profile, profiles[name], name))
        summaries[name] = variant
    return summaries


def _steps(
    chain: list[VariantSummary],
    plan: dict[str, Any],
    profiles: dict[str, dict[str, Any]],
    passes: dict[str, list[dict[str, Any]]],
    baseline_s: float,
) -> tuple[list[StepSummary], list[Ratio]]:
    """The chain's steps, each at the paired time of the variant before it, and their ratios."""
    ratios, steps, time_s = [], [], baseline_s
    for before, after in zip(chain, chain[1:], strict=False):
        ratio = paired(before, after)
        ratios.append(ratio)
        operators = None
        if before.name in passes and after.name in passes:
            operators = [
                OperatorChange(**row) for row in op_diff(passes[before.name], passes[after.name])
            ]
        where = where_saving_came_from(profiles.get(before.name), profiles.get(after.name))
        step = summarise_step(before, after, ratio, time_s, plan, where, operators)
        steps.append(step)
        time_s = step.time_s
    return steps, ratios


def _meta(every_timed: list[dict[str, Any]]) -> Meta | None:
    if not every_timed:
        return None
    return Meta(**{key: every_timed[0].get(key) for key in META_KEYS})


def build_summary(
    records: list[dict[str, Any]],
    plan: dict[str, Any],
    profiles: list[dict[str, Any]] | None = None,
    sessions: list[dict[str, Any]] | None = None,
) -> Summary:
    """The summary of a job's records (`lab.records.jsonl.read_records`) and its plan
    (`lab.records.plan.read_plan`), both in the current schema."""
    every_timed = [r for r in records if not r["warmup"]]
    job = plan_job(plan)
    call = next_round(job, records)
    excluded = call.state.excluded  # disturbed rounds: out of every comparison (rounds.py)
    timed = [r for r in every_timed if r["round"] not in excluded]
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in timed:
        by_variant[record["variant"]].append(record)
    passes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for profile in profiles or []:
        passes[profile["variant"]].append(profile)
    profile_dicts = {name: passes_summary(runs) for name, runs in passes.items()}
    summaries = _variants(by_variant, profile_dicts)
    chain = sorted(
        (v for v in summaries.values() if v.role in CHAIN_ROLES), key=lambda v: len(v.steps)
    )
    others = [v for v in summaries.values() if v.role in (CONTROL, LEAVE_ONE_OUT)]
    baseline_s = chain[0].timing.total_s.median if chain else 0.0
    steps, ratios = _steps(chain, plan, profile_dicts, passes, baseline_s)
    time_s = steps[-1].time_s if steps else baseline_s
    chain = [
        replace(variant, paired_time_s=estimate)
        for variant, estimate in zip(chain, [baseline_s, *(s.time_s for s in steps)], strict=True)
    ]
    found = _control_ratio(summaries)
    control = (
        None
        if found is None
        else VariantComparison(
            variant=found[0],
            **comparison_fields(comparison(found[1], baseline_s)),
            accuracy_change=paired_accuracy(chain[0], summaries[found[0]]),
            phase_savings=phase_savings(chain[0], summaries[found[0]]),
        )
    )
    has_leave_one_out = any(v.role == LEAVE_ONE_OUT for v in others)
    if has_leave_one_out:
        steps = leave_one_out(steps, chain, summaries, time_s)
    rounds = max((len(v.rounds) for v in chain), default=0)
    comparisons = ratios + ([found[1]] if found else [])
    return Summary(
        schema_version=SUMMARY_SCHEMA_VERSION,
        meta=_meta(every_timed),
        first_run_date=min((r["date"] for r in every_timed), default=None),
        last_run_date=max((r["date"] for r in every_timed), default=None),
        warmup_runs=len(records) - len(every_timed),
        rounds=rounds,
        rounds_run=call.state.rounds_run,
        disturbed_rounds=[
            DisturbedRound(
                round=d.round,
                runs=[DisturbedRun(variant=r.variant, factor=r.factor) for r in d.runs],
            )
            for d in call.state.disturbed
        ],
        rounds_stop=_rounds_stop(call, job),
        adaptive=_adaptive(call, job),
        sessions=_sessions(sessions or []),
        hosts=_hosts(every_timed),
        variants=chain + others,
        control=control,
        power=_power(comparisons, rounds, len(excluded)),
        steps=steps,
        leave_one_out=has_leave_one_out,
        total=Total(
            baseline_s=baseline_s,
            final_s=time_s,
            final_median_s=chain[-1].timing.total_s.median if chain else None,
            saved_s=baseline_s - time_s,
            saved_pct=100.0 * (1 - time_s / baseline_s) if baseline_s else None,
            sum_of_step_savings_s=sum(s.saved_s.estimate for s in steps),
            one_off_preprocessing_s=chain[-1].timing.preprocess_s.median if chain else None,
        ),
        article=_article_totals(steps, plan["article"], _start_step(job.start, plan)),
        profiled=bool(passes),
        start=list(job.start) or None,
    )


def _start_step(start: tuple[str, ...], plan: dict[str, Any]) -> int | None:
    """The article's step a `--from` chain starts after: the last the start's steps reach."""
    facts = plan["step_facts"]
    numbers = [facts[name]["article_step"] for name in start if name in facts]
    return max((n for n in numbers if n is not None), default=None)


# ----------------------------------------------------------------------------- repeated passes
# Profiled passes are noisy (the profiler's own overhead ranged from +7% to +215% between the
# variants of one job), so a category or an operator's time is called the cause of a saving
# only when the passes show a change larger than their own spread (docs/profiling.md).

UNCLEAR = "unclear"  # `attribute`'s verdict when no category qualifies
OP_DIFF_BY_CALLS = 12  # operators whose calls per step changed most (relative change)
OP_DIFF_BY_TIME = 4  # then those whose self time per step changed most


def _per_step(record: dict[str, Any], seconds: float) -> float:
    return seconds / max(record["breakdown"]["train_steps"], 1)


def category_values(record: dict[str, Any]) -> dict[str, float]:
    """Seconds per recorded training step of one pass, per category."""
    breakdown = record["breakdown"]
    return {c: _per_step(record, breakdown[f"{c}_s"]) for c in CATEGORIES}


def phase_values(record: dict[str, Any]) -> dict[str, float]:
    """Seconds per recorded training step of one pass, per phase of the breakdown chart."""
    breakdown = record["breakdown"]
    parts = dict(breakdown["phases_s"])
    parts["other"] = max(breakdown["step_s"] - sum(parts.values()), 0.0)
    return {name: _per_step(record, seconds) for name, seconds in parts.items()}


def profiler_added_s(record: dict[str, Any]) -> float:
    """Seconds per recorded step the profiler added to this pass: its measured distortion."""
    return _per_step(record, abs(record["profiled_steps_s"] - record["unprofiled_steps_s"]))


def _cpu_medians(passes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median over passes of each CPU figure (None for passes that could not read them)."""
    found = [p["cpu"] for p in passes if p["cpu"]]
    if not found:
        return None

    def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [k for k, v in rows[0].items() if not isinstance(v, dict)]
        return {
            k: None if any(r.get(k) is None for r in rows) else median([r[k] for r in rows])
            for k in keys
        }

    summary = medians(found)
    if all("unprofiled" in c for c in found):
        summary["unprofiled"] = medians([c["unprofiled"] for c in found])
    return summary


def passes_summary(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """A variant's profile over its passes: `profile_summary`'s fields as medians, plus the
    per-step values of every pass (what the attribution rule compares), the breakdown chart's
    phases and the CPU use of the main process and the workers."""
    passes = sorted(passes, key=lambda p: p["pass"])
    each = [profile_summary(p) for p in passes]
    summary = dict(each[0])
    summary["seconds"] = {k: median([e["seconds"][k] for e in each]) for k in each[0]["seconds"]}
    total = sum(summary["seconds"][c] for c in CATEGORIES)
    summary["shares"] = {c: summary["seconds"][c] / total if total else 0.0 for c in CATEGORIES}
    for key in ("profiled_steps_s", "unprofiled_steps_s", "profiler_overhead"):
        summary[key] = median([e[key] for e in each])
    phases = [phase_values(p) for p in passes]
    step_totals = [sum(v.values()) for v in phases]
    summary.update(
        {
            "passes": len(passes),
            "traces": [p["trace"] for p in passes],
            "per_step_s": {c: [category_values(p)[c] for p in passes] for c in CATEGORIES},
            "profiler_added_per_step_s": [profiler_added_s(p) for p in passes],
            "phases_per_step_s": {k: median([v[k] for v in phases]) for k in phases[0]},
            "step_per_step_s": {
                "median": median(step_totals),
                "range": [min(step_totals), max(step_totals)],
            },
            "cpu": _cpu_medians(passes),
        }
    )
    return summary


def _below_every(before: list[float], after: list[float]) -> bool:
    """Every pass of the later variant below every pass of the earlier one (swap the two for
    "above")."""
    return max(after) < min(before)


def attribute(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The category a step's saving came from, named only when the passes show it.

    A category qualifies when its fall per recorded step (medians over passes) exceeds what
    the profiler itself added to the two variants' recorded steps (profiled minus unprofiled
    steps of the same pass: the profiler's measured distortion, +7% to +215% of a step in one
    job). With two or more passes of each variant it must also be outside their spread: every
    pass of the later variant below every pass of the earlier one, which with no real change
    happens by chance with probability (N!)^2/(2N)! (1/6 at N=2, 1/20 at N=3, 1/70 at N=4).
    Of the qualifying categories the one that fell most is named; none qualifying is
    "unclear". The reason code says which rule decided: `beyond_profiler` (one pass: the fall
    exceeds the profiler's added time), `beyond_spread` (and outside the passes' spread),
    `one_pass` or `within_spread` (unclear).
    """
    passes = min(before["passes"], after["passes"])
    falls = {
        c: median(before["per_step_s"][c]) - median(after["per_step_s"][c]) for c in CATEGORIES
    }
    threshold = median(before["profiler_added_per_step_s"]) + median(
        after["profiler_added_per_step_s"]
    )
    qualifies = [c for c in CATEGORIES if falls[c] > threshold]
    if passes >= 2:
        qualifies = [
            c for c in qualifies if _below_every(before["per_step_s"][c], after["per_step_s"][c])
        ]
        reasons = ("beyond_spread", "within_spread")
    else:
        reasons = ("beyond_profiler", "one_pass")
    return {
        "came_from": max(qualifies, key=falls.get) if qualifies else UNCLEAR,
        "reason": reasons[0] if qualifies else reasons[1],
        "passes": passes,
        "threshold_per_step_s": threshold,
        "fall_per_step_s": falls,
    }


def _operators_per_step(passes: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """name -> calls and self seconds per recorded step, one value per pass (0 where a pass
    did not run the operator)."""
    table: dict[str, dict[str, list[float]]] = {}
    for index, record in enumerate(passes):
        steps = max(record["breakdown"]["train_steps"], 1)
        for row in record.get("operators", []):
            entry = table.setdefault(
                row["name"], {"calls": [0.0] * len(passes), "self_s": [0.0] * len(passes)}
            )
            entry["calls"][index] = row["calls"] / steps
            entry["self_s"][index] = row["self_s"] / steps
    return table


def op_diff(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operators whose calls or self time per recorded step changed most between two
    variants' profiled passes (medians over passes). Calls are exact counts; a self-time change
    is `beyond_spread` only when every pass after is on one side of every pass before (None
    with a single pass: no spread to judge it by)."""
    if not all(p["operators"] for p in before + after):
        return []
    old, new = _operators_per_step(before), _operators_per_step(after)
    empty = {"calls": [0.0], "self_s": [0.0]}
    rows = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, empty), new.get(name, empty)
        calls = (median(a["calls"]), median(b["calls"]))
        self_s = (median(a["self_s"]), median(b["self_s"]))
        spread = None
        if len(before) > 1 and len(after) > 1:
            spread = _below_every(a["self_s"], b["self_s"]) or _below_every(
                b["self_s"], a["self_s"]
            )
        rows.append(
            {
                "name": name,
                "calls_before": calls[0],
                "calls_after": calls[1],
                "calls_change": calls[1] - calls[0],
                "self_s_before": self_s[0],
                "self_s_after": self_s[1],
                "self_s_change": self_s[1] - self_s[0],
                "beyond_spread": spread,
            }
        )
    # By relative change, so a structural change (17 -> 16 batch norms) ranks above the
    # jitter of the many small tensor operators (297 -> 300 empties).
    by_calls = sorted(
        (r for r in rows if r["calls_change"]),
        key=lambda r: -abs(r["calls_change"]) / max(r["calls_before"], r["calls_after"]),
    )[:OP_DIFF_BY_CALLS]
    rest = sorted((r for r in rows if r not in by_calls), key=lambda r: -abs(r["self_s_change"]))[
        :OP_DIFF_BY_TIME
    ]
    return by_calls + rest
