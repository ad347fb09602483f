"""Every timed run split into phases (issue 23): the ledger's arithmetic on a crafted clock,
the phases of a real job's every record summing to its timed region with little left over, a
step's per-phase savings adding up to its mean per-round saving, and the per-phase paired
interval proven on simulated jobs with a known per-phase saving (fixed seeds): it covers the
truth at its nominal rate and finds a phase that did not change at most at the calibrated
false-positive rate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.analysis.summary import paired_phase_saving
from lab.recipe.vocabulary import OTHER, PHASES
from lab.records import outputs
from lab.train.clock import PhaseLedger
from tests.conftest import read_jsonl

JOBS = 2000  # simulated jobs per rate: a rate's standard error is at most ~1.1 points
ROUNDS = 9  # the cpu preset's


class TickingClock:
    """A CPU clock that reads 0, 1, 2, ... seconds: one tick per mark."""

    def __init__(self) -> None:
        self.now = -1.0

    def mark(self) -> float:
        self.now += 1.0
        return self.now

    def seconds(self, start: float, end: float) -> float:
        return end - start


def test_the_ledger_tiles_a_pass_and_relabels_the_last_wait():
    ledger = PhaseLedger(TickingClock())
    for phase in ("train_startup", "forward", "train_data_wait", "forward", "train_data_wait"):
        ledger.enter(phase)
    ledger.relabel("train_edge")  # the wait found the loader exhausted
    phases = ledger.close()  # the closing mark is tick 5
    assert phases == {"train_startup": 1, "forward": 2, "train_data_wait": 1, "train_edge": 1}
    assert list(phases) == ["train_startup", "forward", "train_data_wait", "train_edge"]
    assert ledger.marks == []


def _timed_records(out) -> list[dict]:
    return [r for r in read_jsonl(out / outputs.RESULTS)]


def test_every_run_of_a_job_splits_its_timed_region_into_phases(all_out):
    """Done-when of issue 23: the phases sum to `total_s` (1e-9 relative) in every record,
    warm-up included, and per epoch to its train + eval seconds; `other` (the loop's
    bookkeeping) is at most 5% of the timed region."""
    records = _timed_records(all_out)
    assert records
    for record in records:
        measured = record["measurements"]
        phases = measured["phases_s"]
        assert set(phases) == set(PHASES), record["variant"]  # the file sorts its keys
        assert sum(phases.values()) == pytest.approx(measured["total_s"], rel=1e-9, abs=0)
        assert 0 <= phases[OTHER] <= 0.05 * measured["total_s"], (record["variant"], phases)
        assert all(seconds >= 0 for seconds in phases.values()), (record["variant"], phases)
        for epoch in measured["epochs"]:
            total = epoch["train_s"] + epoch["eval_s"]
            assert sum(epoch["phases_s"].values()) == pytest.approx(total, rel=1e-9, abs=0)


def test_a_steps_phase_savings_add_up_to_its_mean_per_round_saving(all_out):
    summary = json.loads((all_out / outputs.SUMMARY).read_text())
    totals = {
        v["name"]: dict(zip(v["rounds"], v["timing"]["total_s"]["values"], strict=True))
        for v in summary["variants"]
    }
    chain = [v["name"] for v in summary["variants"] if v["role"] in ("baseline", "step")]
    assert summary["steps"]
    for before, step in zip(chain, summary["steps"], strict=False):
        savings = step["phase_savings"]
        assert list(savings) == list(PHASES)
        a, b = totals[before], totals[step["variant"]]
        mean_saving = np.mean([a[r] - b[r] for r in sorted(set(a) & set(b))])
        estimates = sum(saving["estimate_s"] for saving in savings.values())
        assert estimates == pytest.approx(mean_saving, rel=1e-9, abs=1e-12)
    report = (all_out / outputs.REPORT).read_text()
    assert "## Where each step's seconds went" in report
    assert "| step | sum |" in report


def _simulated_job(
    rng: np.random.Generator, saving_s: float, base_s: float = 1.0
) -> tuple[dict[int, float], dict[int, float]]:
    """One phase of two variants over ROUNDS rounds, as the lab's rounds see it: a drift
    shared by the round (the machine's state, +-10%), independent noise per run (8% of the
    phase), and the after-variant's phase shorter by `saving_s`. Returns seconds by round."""
    drift = 1 + rng.normal(0, 0.10, ROUNDS)
    before = base_s * drift + rng.normal(0, 0.08 * base_s, ROUNDS)
    after = (base_s - saving_s) * drift + rng.normal(0, 0.08 * base_s, ROUNDS)
    return dict(enumerate(before)), dict(enumerate(after))


def _rates(saving_s: float, seed: int) -> tuple[float, float]:
    """(share of jobs whose interval covers the true saving, share called significant)."""
    rng = np.random.default_rng(seed)
    covered = significant = 0
    for _ in range(JOBS):
        saving = paired_phase_saving(*_simulated_job(rng, saving_s))
        covered += saving.low_s <= saving_s <= saving.high_s
        significant += bool(saving.significant)
    return covered / JOBS, significant / JOBS


def test_a_phase_that_did_not_change_reads_significant_at_most_6_percent():
    coverage, false_positives = _rates(0.0, seed=23)
    assert false_positives <= 0.06
    assert coverage >= 0.94


def test_a_known_phase_saving_is_covered_and_found():
    """A 0.15 s saving in a 1 s phase (about twice the per-run noise): its interval covers
    the truth at the nominal rate and the saving reads significant in most jobs."""
    coverage, power = _rates(0.15, seed=24)
    assert coverage >= 0.93
    assert power >= 0.8


def test_a_phase_saving_is_before_minus_after_over_the_rounds_both_ran():
    saving = paired_phase_saving({0: 3.0, 1: 3.0, 2: 3.0, 7: 9.0}, {0: 2.0, 1: 2.0, 2: 2.0})
    assert saving.estimate_s == pytest.approx(1.0)
    assert (saving.low_s, saving.high_s) == pytest.approx((1.0, 1.0))
    assert saving.significant is True
    two = paired_phase_saving({0: 3.0, 1: 3.0}, {0: 2.0, 1: 2.0})
    assert two.low_s is None and two.significant is None
