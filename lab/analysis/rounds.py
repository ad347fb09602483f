"""How many rounds a job runs, decided from its records alone: the engine asks `next_round`
after every round, and the summary asks the same of the finished records, so a report rebuilt
later states the engine's own decision.

A round judged disturbed (`lab.analysis.disturbed`) is left out of every comparison and
replaced by one more round:
- a job of fixed `--rounds N` runs until it has N clean rounds, with at most N // 2
  replacements (`replacement_cap`); at the cap it stops with fewer clean rounds, and the report
  says so (a machine that disturbs every other round needs a quieter machine, not more rounds);
- an adaptive job (`--target-mde`, `--budget`; `lab.analysis.adaptive`) counts only clean
  rounds towards its target, and every round run towards `--max-rounds` and the budget.

The budget counts the seconds the timed runs themselves took (training, evaluation, one-off
preprocessing and the network's setup, warm-up included), as the records state them: not data
loading, and not the profiled passes after the rounds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.analysis.adaptive import (
    DEFAULT_MAX_ROUNDS,
    DEFAULT_MIN_ROUNDS,
    AdaptiveRule,
    Decision,
    decide,
)
from lab.analysis.disturbed import DisturbedRound, disturbed_rounds
from lab.recipe.vocabulary import BASELINE, CHAIN_ROLES, CONTROL
from lab.records.plan import JobSpec

ROUNDS_DONE = "rounds"  # a fixed job has its N clean rounds
REPLACEMENT_CAP = "replacement_cap"  # a fixed job replaced N // 2 disturbed rounds and stopped


@dataclass(frozen=True)
class RoundsState:
    """What the records say about a job's rounds so far."""

    rounds_run: int  # rounds with at least one timed run, disturbed ones included
    disturbed: tuple[DisturbedRound, ...]
    comparison_logs: tuple[tuple[float, ...], ...]  # per comparison, over clean rounds
    elapsed_s: float  # seconds of every run recorded, warm-up included
    round_durations_s: tuple[float, ...]  # seconds of each round's runs together

    @property
    def excluded(self) -> set[int]:
        return {d.round for d in self.disturbed}

    @property
    def clean_rounds(self) -> int:
        return self.rounds_run - len(self.disturbed)


@dataclass(frozen=True)
class RoundCall:
    """`next_round`'s answer: stop or run another round, why, and the adaptive figures."""

    stop: bool
    reason: str | None  # ROUNDS_DONE, REPLACEMENT_CAP or an adaptive reason when stopping
    state: RoundsState
    decision: Decision | None  # adaptive jobs only

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop": self.stop,
            "reason": self.reason,
            "rounds_run": self.state.rounds_run,
            "clean_rounds": self.state.clean_rounds,
            "disturbed_rounds": [d.round for d in self.state.disturbed],
            "decision": None if self.decision is None else self.decision.to_dict(),
        }


def run_seconds(record: Mapping[str, Any]) -> float:
    """What one run cost the budget: its timed region, one-off preprocessing and setup."""
    m = record["measurements"]
    return m["total_s"] + m["preprocess_s"] + (m.get("setup_s") or 0.0)


def times_by_variant(timed: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, float]]:
    """variant -> round -> total_s of the timed (not warm-up) records."""
    times: dict[str, dict[int, float]] = defaultdict(dict)
    for record in timed:
        times[record["variant"]][record["round"]] = record["measurements"]["total_s"]
    return dict(times)


def comparisons(timed: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(before, after) of every comparison the report makes a verdict on: neighbours of the
    cumulative chain, and the baseline against the control."""
    roles: dict[str, tuple[str, int]] = {}
    for record in timed:
        roles[record["variant"]] = (record["role"], len(record["steps"]))
    chain = sorted(
        (name for name, (role, _) in roles.items() if role in CHAIN_ROLES),
        key=lambda name: roles[name][1],
    )
    pairs = list(zip(chain, chain[1:], strict=False))
    baseline = next((n for n, (role, _) in roles.items() if role == BASELINE), None)
    control = next((n for n, (role, _) in roles.items() if role == CONTROL), None)
    if baseline is not None and control is not None:
        pairs.append((baseline, control))
    return pairs


def rounds_state(records: Sequence[Mapping[str, Any]]) -> RoundsState:
    """The rounds run, the disturbed ones, the comparisons' clean log-ratios and the seconds
    spent, from a job's records (warm-up included, in any order)."""
    timed = [r for r in records if not r["warmup"]]
    times = times_by_variant(timed)
    disturbed = tuple(disturbed_rounds(times))
    excluded = {d.round for d in disturbed}
    logs = []
    for before, after in comparisons(timed):
        common = sorted((set(times[before]) & set(times[after])) - excluded)
        logs.append(tuple(float(np.log(times[after][r] / times[before][r])) for r in common))
    per_round: dict[int, float] = defaultdict(float)
    for record in timed:
        per_round[record["round"]] += run_seconds(record)
    return RoundsState(
        rounds_run=len(per_round),
        disturbed=disturbed,
        comparison_logs=tuple(logs),
        elapsed_s=sum(run_seconds(r) for r in records),
        round_durations_s=tuple(per_round[r] for r in sorted(per_round)),
    )


def adaptive_rule(job: JobSpec) -> AdaptiveRule | None:
    """The job's adaptive rule, None for a job of fixed rounds."""
    if not job.adaptive:
        return None
    return AdaptiveRule(
        target_mde_pct=job.target_mde_pct,
        budget_s=job.budget_s,
        min_rounds=job.min_rounds or DEFAULT_MIN_ROUNDS,
        max_rounds=job.max_rounds or DEFAULT_MAX_ROUNDS,
    )


def replacement_cap(rounds: int) -> int:
    """The most rounds a fixed job of `rounds` clean rounds runs: N // 2 replacements."""
    return rounds + rounds // 2


def next_round(job: JobSpec, records: Sequence[Mapping[str, Any]]) -> RoundCall:
    """Whether a job (plan.json's: `lab.records.plan.plan_job`) whose records are `records`
    stops now, and why."""
    state = rounds_state(records)
    rule = adaptive_rule(job)
    if rule is not None:
        decision = decide(
            rule,
            state.comparison_logs,
            state.rounds_run,
            state.elapsed_s,
            state.round_durations_s,
        )
        return RoundCall(decision.stop, decision.reason, state, decision)
    if state.clean_rounds >= job.rounds:
        return RoundCall(True, ROUNDS_DONE, state, None)
    if state.rounds_run >= replacement_cap(job.rounds):
        return RoundCall(True, REPLACEMENT_CAP, state, None)
    return RoundCall(False, None, state, None)


def wanted_rounds(job: JobSpec, call: RoundCall) -> int:
    """How many more rounds the rule wants at least (what a `--ray` job submits in its next
    wave): a fixed job's missing clean rounds, within its cap; an adaptive job's missing
    minimum, or the rounds its noise says the target needs, within the budget and the cap.
    At least 1; meaningless once the call says stop."""
    state = call.state
    if call.decision is None:
        missing = job.rounds - state.clean_rounds
        return max(1, min(missing, replacement_cap(job.rounds) - state.rounds_run))
    rule = adaptive_rule(job)
    assert rule is not None
    decision = call.decision
    wanted = rule.min_rounds - state.clean_rounds
    if decision.rounds_to_target is not None:
        wanted = max(wanted, decision.rounds_to_target)
    limits = [rule.max_rounds - state.rounds_run]
    if decision.rounds_in_budget is not None:
        limits.append(decision.rounds_in_budget)
    return max(1, min(wanted, *limits))
