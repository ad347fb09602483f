"""The words a report puts on a summary's data: timing rules, where a saving came from, why a
step is expected to change nothing, how a step's interaction reads. The summary stores codes
and numbers; these phrases are written here, once, for the report and the charts."""

from __future__ import annotations

from collections.abc import Sequence

from lab.analysis.adaptive import STOP_REASONS
from lab.analysis.disturbed import DisturbedRound as DisturbedNow
from lab.analysis.rounds import REPLACEMENT_CAP, ROUNDS_DONE, RoundCall
from lab.recipe.vocabulary import TRAIN_EVAL, TRAIN_PREPROCESS, WHITEN_TRAIN_FINAL_EVAL
from lab.records.summary import Adaptive, DisturbedRound, Summary
from lab.records.summary_step import PhaseSaving, StepSummary, Where

RULE_NAMES = {
    TRAIN_EVAL: "training + evaluation (preprocessing excluded)",
    TRAIN_PREPROCESS: "training + preprocessing (evaluation excluded)",
    WHITEN_TRAIN_FINAL_EVAL: (
        "whitening + training + final evaluation (data loading and per-epoch evaluations excluded)"
    ),
}
RULE_SHORT = {
    TRAIN_EVAL: "train + eval",
    TRAIN_PREPROCESS: "train + preprocess",
    WHITEN_TRAIN_FINAL_EVAL: "whiten + train + final eval",
}

# A variant whose `learned` is false (lab.analysis.summary.learned), and the rule behind it.
NOT_LEARNED = "did not learn at this scale"
LEARNED_RULE = "median accuracy below twice chance, 20% for 10 classes"


def came_from(where: Where) -> str:
    """'compute', or why no category was named: 'unclear (one profiled pass)'."""
    if where.reason == "one_pass":
        return f"{where.came_from} (one profiled pass)"
    if where.reason == "within_spread":
        passes = where.attribution.passes
        return f"{where.came_from} (within the spread of {passes} profiled passes)"
    return where.came_from


# How many significant phases a table cell names before it says "and N more".
NAMED_PHASES = 3
MATERIAL_SHARE = 0.05  # a significant phase under this share of the largest one (or of the
# step's summed saving) is not named


def significant_phases(savings: dict[str, PhaseSaving]) -> list[str]:
    """The phases whose paired saving is significant, the largest (in seconds, either sign)
    first."""
    named = [phase for phase, saving in savings.items() if saving.significant]
    return sorted(named, key=lambda phase: -abs(savings[phase].estimate_s))


def material_phases(savings: dict[str, PhaseSaving]) -> tuple[list[str], list[str]]:
    """The significant phases split into those the words name (at least MATERIAL_SHARE of the
    largest phase's seconds and of the step's summed saving) and the rest: a phase that moved
    by a millisecond in every round is significant, but naming it beside a second of forward,
    or as the cause of a one-second saving, would read as a cause."""
    named = significant_phases(savings)
    if not named:
        return [], []
    total = abs(sum(saving.estimate_s for saving in savings.values()))
    floor = MATERIAL_SHARE * max(abs(savings[named[0]].estimate_s), total)
    material = [phase for phase in named if abs(savings[phase].estimate_s) >= floor]
    return material, [phase for phase in named if phase not in material]


def phase_comparisons(summary: Summary) -> list[tuple[str, dict[str, PhaseSaving], float]]:
    """(row name, phase savings, the mean per-round saving they add up to) for each step and
    the control, where the records have phases: the rows of the report's phase table and of
    its chart."""
    rows = [(f"+{s.name}", s.phase_savings) for s in summary.steps]
    if summary.control is not None:
        rows.append((f"control ({summary.control.variant})", summary.control.phase_savings))
    return [
        (name, savings, sum(saving.estimate_s for saving in savings.values()))
        for name, savings in rows
        if savings is not None
    ]


def phase_saving(saving: PhaseSaving) -> str:
    """'+0.52 s [+0.41, +0.63]' (seconds saved; negative: the phase took longer)."""
    if saving.low_s is None or saving.high_s is None:
        return f"{saving.estimate_s:+.2f} s (not assessed)"
    return f"{saving.estimate_s:+.2f} s [{saving.low_s:+.2f}, {saving.high_s:+.2f}]"


def phases_came_from(savings: dict[str, PhaseSaving]) -> str:
    """Where a step's seconds went, from the rounds: its significant phases with their
    savings ('forward +0.52 s, train_startup +0.31 s'), or why none is named."""
    if all(saving.significant is None for saving in savings.values()):
        return "not assessed (fewer than 3 rounds)"
    named, small = material_phases(savings)
    if small and not named:
        return (
            f"unclear (the phases whose change is significant are each under "
            f"{MATERIAL_SHARE:.0%} of the saving: {', '.join(small)})"
        )
    if not named:
        return "unclear (no phase's change is significant)"
    shown = [f"{phase} {savings[phase].estimate_s:+.2f} s" for phase in named[:NAMED_PHASES]]
    more = len(named) - NAMED_PHASES
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def no_effect(step: StepSummary) -> str:
    """Why a step is expected to change no work on this device."""
    expected = step.no_effect_expected
    if expected.needs_device is not None:
        return (
            f"no effect expected on this device: it acts only on {expected.needs_device}, "
            f"and these runs trained on {expected.device}"
        )
    return (
        f"no effect expected on this device: it changes only {expected.needs_precision} "
        f"models, and this one trained in {expected.precision}"
    )


def interaction_reading(step: StepSummary) -> str:
    """A step's saving in the cumulative order against its saving when added last."""
    name, interaction = step.name, step.interaction
    cumulative = step.saved_pct.estimate
    last = step.leave_one_out.saved_pct.estimate
    if interaction.is_last_step:
        return f"{name} is the last step: added last is its cumulative saving, {cumulative:.1f}%"
    reading = (
        f"{name} saves {cumulative:.1f}% right after {interaction.cumulative_after} but "
        f"{last:.1f}% when added last, to every other step"
    )
    if interaction.same_config:
        reading += (
            f"; with every other step in, {name} changes nothing (the two variants run the "
            "same configuration: a later step overrides it)"
        )
    return reading


def disturbed_evidence(disturbed: Sequence[DisturbedRound | DisturbedNow]) -> str:
    """'round 4: +smooth_lr 4.4x its expected time; round 7: ...' (the summary's
    `disturbed_rounds`, or the analysis's own while a job runs)."""
    return "; ".join(
        f"round {d.round + 1}: "
        + ", ".join(f"`{run.variant}` {run.factor:.2f}x" for run in d.runs)
        + " its expected time"
        for d in disturbed
    )


def disturbed_line(disturbed: Sequence[DisturbedNow]) -> str:
    """The progress line for newly disturbed rounds."""
    return (
        f"disturbed round(s), runs far off what their round and variant predict "
        f"({disturbed_evidence(disturbed)}): left out of every comparison and replaced"
    )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def adaptive_line(adaptive: Adaptive) -> str:
    """The report's sentence on an adaptive job (the summary's `adaptive`): its rule, what
    ended it and the resolution it reached."""
    rule = adaptive.rule
    asked = []
    if rule.target_mde_pct is not None:
        asked.append(f"a minimum detectable saving of {rule.target_mde_pct:g}%")
    if rule.budget_s is not None:
        asked.append(f"a budget of {_duration(rule.budget_s)} of timed runs")
    asked.append(f"{rule.min_rounds} to {rule.max_rounds} rounds")
    ended = (
        f"it stopped because {ROUND_STOP_REASONS[adaptive.reason]}"
        if adaptive.reason
        else "it has not stopped yet (interrupted: `--resume` continues it under the same rule)"
    )
    if adaptive.min_detectable_pct is None:
        reached = "none yet (too few clean rounds for an interval)"
    else:
        reached = (
            f"a minimum detectable saving of {adaptive.min_detectable_pct:.1f}% "
            f"({adaptive.stopping_mde_pct:.1f}% on the blinded noise the rule stops on)"
        )
    return (
        f"- **Adaptive rounds** ({', '.join(asked)}): {ended}, after {adaptive.rounds_run} "
        f"round(s), {adaptive.clean_rounds} clean, and {_duration(adaptive.spent_s)} of "
        f"timed runs. Resolution reached: {reached}."
    )


def _pct(value: float | None) -> str:
    return "not yet known" if value is None else f"{value:.1f}%"


def decision_line(call: RoundCall, target_mde_pct: float | None) -> str:
    """An adaptive job's state after a round (`lab.analysis.rounds.next_round`'s answer, whose
    `decision` is set), for a job whose target is `target_mde_pct` (None: a budget only)."""
    decision, state = call.decision, call.state
    line = (
        f"after {state.rounds_run} round(s) ({state.clean_rounds} clean): minimum detectable "
        f"saving {_pct(decision.min_detectable_pct)}"
    )
    if target_mde_pct is not None:
        if decision.stopping_mde_pct is not None:
            line += f", {decision.stopping_mde_pct:.1f}% on the stopping noise"
        line += f" (target {target_mde_pct:g}%)"
        if decision.rounds_to_target is not None and not decision.stop:
            line += f"; about {decision.rounds_to_target} more clean round(s) to the target"
    if decision.rounds_in_budget is not None:
        line += f"; {decision.rounds_in_budget} more round(s) fit in the budget"
    if decision.stop:
        line += f". Stopping: {ROUND_STOP_REASONS[decision.reason]}"
    return line


ROUND_STOP_REASONS = {
    **STOP_REASONS,
    ROUNDS_DONE: "the job ran its planned rounds",
    REPLACEMENT_CAP: "the job replaced as many disturbed rounds as it may (half its planned "
    "rounds) and stopped with fewer clean rounds than planned",
}
