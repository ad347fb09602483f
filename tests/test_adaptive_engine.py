"""The rounds rule in the engine: a job's rounds loop (`lab.engine.runner.run_timed`) asks the
rule (`lab.analysis.rounds`, through `lab.ablate.rounds_rule`) after every round. The loop is
driven here by a fake trainer that yields crafted records (times from a fixed noise model, some
runs slowed on purpose), so each stopping reason, a disturbed round's replacement and a resume
are tested without training; one real smoke job checks the whole path end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lab import ablate
from lab.analysis.adaptive import BUDGET, MAX_ROUNDS, TARGET
from lab.analysis.rounds import REPLACEMENT_CAP, ROUNDS_DONE, next_round, replacement_cap
from lab.engine import runner
from lab.engine.job import Job
from lab.records import outputs
from lab.records.jsonl import RECORD_SCHEMA_VERSION, read_records

STEPS = ("cached_preprocessing", "main_thread_aug")  # baseline, two steps, the control
BASE_S = {"baseline": 10.0, "baseline (control)": 10.0, "+cached_preprocessing": 9.0}
FINAL_S = 7.0  # +main_thread_aug


def _job(**fields) -> Job:
    return Job(
        preset="smoke",
        steps=STEPS,
        seed=0,
        order_seed=3,
        device="cpu",
        profile=False,
        **{"rounds": 5, **fields},
    )


class FakeTrainer:
    """Stands in for `runner.run_slots`: each run's time is its variant's, times a round
    effect and per-run noise of `noise` (log sd), from a seed of its round and variant;
    `slowed` maps (round, variant) to a factor (a disturbance). `stop_after` runs, it raises
    KeyboardInterrupt (an interrupted job)."""

    def __init__(self, noise: float, slowed: dict | None = None, stop_after: int | None = None):
        self.noise, self.slowed, self.stop_after = noise, slowed or {}, stop_after
        self.made: list[tuple[str, int]] = []

    def __call__(self, job, slots, subsets, device, peak, progress):
        for slot in slots:
            if self.stop_after is not None and len(self.made) >= self.stop_after:
                raise KeyboardInterrupt
            name = slot.variant.name
            rng = np.random.default_rng([slot.round + 1, sum(map(ord, name))])
            drift = np.random.default_rng([slot.round + 1]).normal(0, 0.05)
            seconds = BASE_S.get(name, FINAL_S) * math.exp(drift + rng.normal(0, self.noise))
            seconds *= self.slowed.get((slot.round, name), 1.0)
            self.made.append((name, slot.round))
            yield slot, _record(slot, seconds)


def _record(slot, seconds: float) -> dict:
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "variant": slot.variant.name,
        "role": slot.variant.role,
        "steps": list(slot.variant.steps),
        "round": slot.round,
        "warmup": slot.warmup,
        "measurements": {
            "total_s": seconds,
            "train_s": seconds * 0.9,
            "eval_s": seconds * 0.1,
            "preprocess_s": 0.0,
            "setup_s": 0.5,
            "final_test_accuracy": 0.5,
        },
    }


def _run(job: Job, out: Path, trainer: FakeTrainer, monkeypatch) -> list[dict]:
    """The engine's rounds loop under the CLI's rule, on the fake trainer; the decisions."""
    monkeypatch.setattr(runner, "run_slots", trainer)
    out.mkdir(exist_ok=True)
    decisions: list[dict] = []
    progress = runner.Progress(False)
    runner.run_timed(job, out, None, progress, {}, ablate.rounds_rule(job), decisions)
    return decisions


def _state(job: Job, out: Path):
    return next_round(job, read_records(out / outputs.RESULTS))


def test_a_fixed_job_runs_its_rounds(tmp_path, monkeypatch):
    job = _job(rounds=5)
    decisions = _run(job, tmp_path, FakeTrainer(0.02), monkeypatch)
    call = _state(job, tmp_path)
    assert (call.stop, call.reason, call.state.rounds_run) == (True, ROUNDS_DONE, 5)
    assert decisions[-1]["reason"] == ROUNDS_DONE and len(decisions) == 6  # before each round
    records = read_records(tmp_path / outputs.RESULTS)
    assert sum(r["warmup"] for r in records) == 1 and len(records) == 1 + 5 * 4


def test_a_disturbed_round_is_left_out_and_replaced(tmp_path, monkeypatch):
    job = _job(rounds=5)
    slowed = {(2, "+cached_preprocessing"): 3.5}
    _run(job, tmp_path, FakeTrainer(0.02, slowed), monkeypatch)
    call = _state(job, tmp_path)
    assert [d.round for d in call.state.disturbed] == [2]
    assert call.state.disturbed[0].runs[0].variant == "+cached_preprocessing"
    assert (call.state.rounds_run, call.state.clean_rounds, call.reason) == (6, 5, ROUNDS_DONE)
    assert all(len(logs) == 5 for logs in call.state.comparison_logs)  # round 2 in none


def test_a_fixed_job_stops_at_its_replacement_cap(tmp_path, monkeypatch):
    job = _job(rounds=6)
    slowed = {
        (1, "+main_thread_aug"): 4.0,
        (3, "+cached_preprocessing"): 3.0,
        (5, "baseline (control)"): 3.0,
        (7, "baseline"): 4.0,
    }
    _run(job, tmp_path, FakeTrainer(0.02, slowed), monkeypatch)
    call = _state(job, tmp_path)
    assert [d.round for d in call.state.disturbed] == [1, 3, 5, 7]
    assert call.reason == REPLACEMENT_CAP
    assert call.state.rounds_run == replacement_cap(6) == 9 and call.state.clean_rounds == 5


def test_an_adaptive_job_stops_on_its_target(tmp_path, monkeypatch):
    job = _job(target_mde_pct=8.0, min_rounds=5, max_rounds=40)
    decisions = _run(job, tmp_path, FakeTrainer(0.03), monkeypatch)
    last = decisions[-1]
    assert last["reason"] == TARGET
    assert last["decision"]["stopping_mde_pct"] <= 8.0 and last["clean_rounds"] >= 5
    assert all(not d["stop"] for d in decisions[:-1])  # it stopped the first time it could
    assert decisions[-2]["decision"]["stopping_mde_pct"] is None or (
        decisions[-2]["decision"]["stopping_mde_pct"] > 8.0 or decisions[-2]["clean_rounds"] < 5
    )


def test_an_adaptive_job_stops_at_its_maximum(tmp_path, monkeypatch):
    job = _job(target_mde_pct=1.0, min_rounds=5, max_rounds=7)
    decisions = _run(job, tmp_path, FakeTrainer(0.1), monkeypatch)
    assert decisions[-1]["reason"] == MAX_ROUNDS and decisions[-1]["rounds_run"] == 7


def test_a_budget_alone_spends_itself_on_rounds(tmp_path, monkeypatch):
    # A round of the fake costs ~36 s + 4 x 0.5 s of setup; the warm-up ~10.5 s: 4 rounds fit.
    job = _job(budget_s=200.0, min_rounds=5, max_rounds=100)
    decisions = _run(job, tmp_path, FakeTrainer(0.02), monkeypatch)
    last = decisions[-1]
    assert last["reason"] == BUDGET and last["decision"]["rounds_in_budget"] == 0
    call = _state(job, tmp_path)
    assert call.state.elapsed_s <= 200.0  # every round started fitted in what was left
    assert call.state.elapsed_s + last["decision"]["round_s"] > 200.0
    assert call.state.rounds_run == 4


def test_an_interrupted_adaptive_job_resumes_under_its_stored_rule(tmp_path, monkeypatch):
    job = _job(target_mde_pct=8.0, min_rounds=5, max_rounds=40)
    job.save(tmp_path, "0123456789abcdef")
    with pytest.raises(KeyboardInterrupt):
        _run(job, tmp_path, FakeTrainer(0.03, stop_after=1 + 4 * 3 + 2), monkeypatch)
    records = read_records(tmp_path / outputs.RESULTS)
    assert max(r["round"] for r in records) == 3  # round 4 half done
    stored = Job.load(tmp_path, "0123456789abcdef")
    assert (stored.target_mde_pct, stored.min_rounds, stored.max_rounds) == (8.0, 5, 40)
    resumed = FakeTrainer(0.03)
    decisions = _run(stored, tmp_path, resumed, monkeypatch)
    assert resumed.made[:2] == [
        (s.variant.name, 3) for s in stored.round_slots(3)[2:]
    ]  # the unfinished round first, the runs it lacked, in its order
    assert decisions[-1]["reason"] == TARGET
    # The same job run in one go stops at the same round with the same records.
    again = tmp_path / "again"
    assert _run(job, again, FakeTrainer(0.03), monkeypatch)[-1] == decisions[-1]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--all", "--budget", "5x"], "--budget '5x': expected a duration"),
        (["--all", "--target-mde", "0"], "--target-mde 0: a saving in percent"),
        (["--all", "--target-mde", "5", "--rounds", "3"], "--rounds 3: fixed rounds"),
        (["--all", "--max-rounds", "9"], "--max-rounds 9: only with --target-mde or --budget"),
        (["--all", "--target-mde", "5", "--min-rounds", "2"], "--min-rounds 2: must be >= 3"),
        (["--all", "--budget", "1h", "--max-rounds", "4"], "--max-rounds 4: must be >= the"),
        (["--target-mde", "5"], "--target-mde: a job of the baseline alone compares nothing"),
    ],
)
def test_bad_adaptive_flags_are_one_line_errors(args, fragment, capsys):
    assert ablate.main(["--plan", "--preset", "smoke", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err


def test_plan_says_an_adaptive_job_is_adaptive(capsys):
    assert ablate.main(["--plan", "--preset", "smoke", "--all", "--budget", "30m"]) == 0
    assert "adaptive rounds (5 to 100)" in capsys.readouterr().out


def test_a_real_adaptive_smoke_job_end_to_end(tmp_path, real_data_path):
    """Warm-up, one round of three variants, and the budget ends it; the report says so; a
    resume of the finished job runs nothing more."""
    out = tmp_path / "out"
    args = ["--preset", "smoke", "--steps", "main_thread_aug", "--set", "epochs=1"]
    flags = ["--budget", "1s", "--no-profile", "--no-progress", "--out", str(out)]
    assert ablate.main([*args, *flags]) == 0

    summary = json.loads((out / outputs.SUMMARY).read_text())
    assert summary["adaptive"]["reason"] == BUDGET and summary["rounds_run"] == 1
    assert summary["adaptive"]["rule"]["budget_s"] == 1.0
    assert "**Adaptive rounds**" in (out / outputs.REPORT).read_text()
    assert ablate.main(["--resume", str(out), "--no-progress"]) == 0
    assert len(read_records(out / outputs.RESULTS)) == 1 + 3
    assert ablate.main(["--resume", str(out), "--budget", "2m"]) == 2  # would change the job
