"""`--all` end to end on real data (smoke scale): randomized rounds with a control, every
output, the paired attribution arithmetic, report rebuilding, resuming, and TensorBoard."""

from __future__ import annotations

import json
import os
import signal

import pytest

from lab.analysis.stats import MIN_ROUNDS
from lab.engine.job import Job
from lab.recipe.variant import CONTROL_NAME
from tests.conftest import (
    ALL_ROUNDS,
    HUNG_S,
    STEP_NAMES,
    VARIANT_NAMES,
    LabProcess,
    assert_one_line_error,
    assert_verdict_follows_interval,
    call_cli,
    read_jsonl,
    rounds_of,
    run_lab,
    wait_for,
)

VARIANTS = VARIANT_NAMES
JOB_VARIANTS = [*VARIANT_NAMES, CONTROL_NAME]
ROUNDS = ALL_ROUNDS


def _records(out):
    return read_jsonl(out / "results.jsonl")


def test_rounds_run_every_variant_once_in_the_recorded_shuffled_order(all_out):
    records = _records(all_out)
    assert records[0]["warmup"] and records[0]["variant"] == "baseline"
    assert records[0]["round"] == -1
    timed = records[1:]
    _, rounds_run = rounds_of(all_out)
    assert len(timed) == rounds_run * len(JOB_VARIANTS)
    plan = json.loads((all_out / "plan.json").read_text())
    job = Job.from_dict(plan["job"])
    orders = set()
    for round_index in range(rounds_run):
        in_round = timed[round_index * len(JOB_VARIANTS) : (round_index + 1) * len(JOB_VARIANTS)]
        assert {r["round"] for r in in_round} == {round_index}
        assert sorted(r["variant"] for r in in_round) == sorted(JOB_VARIANTS)
        assert [r["position"] for r in in_round] == list(range(len(JOB_VARIANTS)))
        expected = [JOB_VARIANTS[i] for i in job.round_order(round_index, len(JOB_VARIANTS))]
        assert [r["variant"] for r in in_round] == expected
        assert all(r["order_seed"] == job.order_seed for r in in_round)
        assert all(r["seed"] == job.seed + round_index for r in in_round)
        orders.add(tuple(expected))
    assert len(orders) > 1, "the order is shuffled per round"
    for record in timed:
        m = record["measurements"]
        assert m["worker_launches"] == record["expected"]["worker_launches"]
        assert m["rng_calls"] == record["expected"]["rng_calls"]
    control = [r for r in timed if r["variant"] == CONTROL_NAME]
    assert all(r["role"] == "control" and r["steps"] == [] for r in control)
    assert control[0]["config"] == next(r for r in timed if r["variant"] == "baseline")["config"]


def test_summary_has_paired_savings_that_add_up(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    clean_rounds, _ = rounds_of(all_out)
    assert [v["name"] for v in summary["variants"]] == JOB_VARIANTS
    steps = summary["steps"]
    assert [s["name"] for s in steps] == [v[1:] for v in VARIANTS[1:]]
    total = summary["total"]
    assert total["sum_of_step_savings_s"] == pytest.approx(total["baseline_s"] - total["final_s"])
    assert sum(s["saved_s"]["estimate"] for s in steps) == pytest.approx(total["saved_s"])
    for step in steps:
        for unit in ("saved_pct", "saved_s"):
            value = step[unit]
            assert_verdict_follows_interval(
                value["estimate"], value["ci95"], value["verdict"], 0.0, clean_rounds
            )
        # Percent and seconds are the same ratio on two scales.
        assert step["saved_s"]["estimate"] == pytest.approx(
            step["saved_pct"]["estimate"] / 100 * (step["time_s"] + step["saved_s"]["estimate"])
        )
        assert step["rounds"] == clean_rounds
    by_name = {s["name"]: s for s in steps}
    assert by_name["bulk_rng"]["counter_deltas"]["rng_calls"] == 6 - 3 * 500 * 2
    assert by_name["main_thread_aug"]["counter_deltas"]["worker_launches"] == -4
    assert by_name["cached_preprocessing"]["one_off_s"] > 0
    assert by_name["bulk_rng"]["article"]["saved_s"] == 7.0
    for variant in summary["variants"]:
        assert variant["counters_match_plan"]
        assert variant["accuracy"]["runs"] == clean_rounds


def test_control_and_power_are_in_the_summary_and_the_report(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    control = summary["control"]
    assert control["variant"] == CONTROL_NAME
    assert set(control["saved_pct"]) == {"estimate", "ci95", "verdict"}
    clean_rounds, _ = rounds_of(all_out)
    assert control["rounds"] == clean_rounds
    pct = control["saved_pct"]
    assert_verdict_follows_interval(pct["estimate"], pct["ci95"], pct["verdict"], 0, clean_rounds)
    power = summary["power"]
    assert power["paired_sd_pct"] > 0 and power["rounds"] == clean_rounds
    # One degree of freedom per clean round beyond the first, per step and the control.
    assert power["degrees_of_freedom"] == (len(STEP_NAMES) + 1) * (clean_rounds - 1)
    report = (all_out / "report.md").read_text()
    assert "## Noise floor and power" in report
    assert f"**Control** (`{CONTROL_NAME}`" in report
    # A busy machine's disturbed rounds can leave fewer clean rounds than an interval needs.
    if clean_rounds >= MIN_ROUNDS:
        assert power["min_detectable_pct"] > 0
        assert f"Minimum detectable saving: {power['min_detectable_pct']:.1f}%" in report
    else:
        assert power["min_detectable_pct"] is None
        assert "no interval and no minimum detectable saving" in report


def test_report_and_charts_are_written(all_out):
    report = (all_out / "report.md").read_text()
    for fragment in [
        "| step | time (paired) | median run | saved (s, 95% CI) |",
        "+main_thread_aug",
        "356 s",
        "![waterfall](waterfall.png)",
        "## Reading",
        "add up to",
        "Wall time of the job:",
    ]:
        assert fragment in report, fragment
    assert (all_out / "waterfall.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (all_out / "waterfall.svg").read_bytes()[:500]
    (session,) = read_jsonl(all_out / "sessions.jsonl")
    assert session["finished"] and session["wall_s"] > 0
    assert session["timed_runs"] == 1 + rounds_of(all_out)[1] * len(JOB_VARIANTS)


def test_report_rebuilds_from_the_records_alone(all_out, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.jsonl", "plan.json", "profile.jsonl", "sessions.jsonl"):
        (copy / name).write_bytes((all_out / name).read_bytes())
    result = call_cli(str(copy), module="lab.report")
    assert result.returncode == 0, result.stderr
    assert json.loads((copy / "summary.json").read_text()) == json.loads(
        (all_out / "summary.json").read_text()
    )
    assert (copy / "report.md").read_text() == (all_out / "report.md").read_text()
    # Timings alone (no profile.jsonl) still make a full report, minus the breakdown.
    (copy / "profile.jsonl").unlink()
    assert call_cli(str(copy), module="lab.report").returncode == 0
    assert "Not profiled" in (copy / "report.md").read_text()


def test_report_of_a_folder_without_results_is_a_clean_error(tmp_path):
    assert_one_line_error(call_cli(str(tmp_path), module="lab.report"), "no such results file")


RESUME_STEPS = ["cached_preprocessing", "main_thread_aug"]
RESUME_VARIANTS = ["baseline", "+cached_preprocessing", "+main_thread_aug"]


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(signal.SIGINT, id="ctrl-c"),
        # The same path with a torn last line; slow, and ctrl-c covers the rest.
        pytest.param(signal.SIGKILL, id="kill-9", marks=pytest.mark.slow),
    ],
)
def test_interrupted_job_resumes_without_loss_or_duplicates(how, tmp_path, real_data_path):
    out = tmp_path / "out"
    # One epoch a run: the resume path is the same at any length, and the test twice as quick.
    # `--from`: the chain starts after bn_dedupe; the resumed job keeps the start.
    steps = ",".join(["bn_dedupe", *RESUME_STEPS])
    args = ["--steps", steps, "--from", RESUME_STEPS[0], "--preset", "smoke", "--rounds", "2"]
    args += ["--set", "epochs=1"]
    # Profiled passes are stored in the plan and the resumed job runs them all; the slow kill-9
    # case checks them (six profiled passes, a child process each, double the test's time).
    profiled = how == signal.SIGKILL
    args += ["--profile-passes", "2"] if profiled else ["--no-profile"]
    job = LabProcess(*args, "--out", str(out), "--no-progress")
    results = out / "results.jsonl"

    def recorded() -> int:
        return len(results.read_text().splitlines()) if results.exists() else 0

    # The event, however long a busy machine takes to reach it: the fourth record written.
    job.wait_until(lambda: recorded() >= 4, "the job's fourth record")
    job.send_signal(how)
    ended = job.finish()
    before = results.read_text().splitlines()
    total = 1 + 2 * (len(RESUME_VARIANTS) + 1)  # the warm-up, then 2 rounds with the control
    assert 4 <= len(before) < total, "interrupt partway through"
    if how == signal.SIGINT:
        stderr = ended.stderr
        assert ended.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr
        assert not read_jsonl(out / "sessions.jsonl")[-1]["finished"]
    else:
        assert ended.returncode == -signal.SIGKILL
    resumed = run_lab("--resume", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    after = results.read_text().splitlines()
    assert after[: len(before)] == before  # nothing already written was touched
    assert len(after) == total
    timed = [json.loads(line) for line in after if not json.loads(line)["warmup"]]
    pairs = [(r["variant"], r["round"]) for r in timed]
    assert len(pairs) == len(set(pairs)) == 2 * (len(RESUME_VARIANTS) + 1)
    if profiled:
        _assert_both_profiled_passes(out)
    assert read_jsonl(out / "sessions.jsonl")[-1]["finished"]
    assert all(r["steps"][0] == "bn_dedupe" for r in timed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["start"] == ["bn_dedupe"]
    # The article's figures start after its step 1 (bn_dedupe's), not at its baseline.
    article = summary["article"]
    assert article["start_step"] == 1 and article["baseline_s"] == article["times_s"]["1"]
    assert "the recipe with `bn_dedupe` applied" in (out / "report.md").read_text()


def _assert_both_profiled_passes(out):
    passes = [(r["pass"], r["variant"]) for r in read_jsonl(out / "profile.jsonl")]
    # Each pass once, none twice; pass 0 of every variant before any pass 1.
    assert sorted(passes) == sorted((p, v) for p in (0, 1) for v in RESUME_VARIANTS)
    assert [p for p, _ in passes] == [0, 0, 0, 1, 1, 1]
    for variant in json.loads((out / "summary.json").read_text())["variants"][:3]:
        assert variant["profile"]["passes"] == 2 and len(variant["profile"]["traces"]) == 2
        assert all(
            (out / "tb" / variant["profile"]["tb_run"] / t).is_file()
            for t in variant["profile"]["traces"]
        )


def _copy_job(all_out, out):
    out.mkdir()
    for name in ("results.jsonl", "plan.json"):
        (out / name).write_bytes((all_out / name).read_bytes())
    return json.loads((out / "plan.json").read_text())


def test_resume_refuses_other_code_or_configs(all_out, tmp_path):
    for damage in ("code_hash", "config"):
        out = tmp_path / damage
        plan = _copy_job(all_out, out)
        if damage == "code_hash":
            plan["code_hash"] = "0123456789abcdef"
            fragment = "the code changed since the job started"
        else:
            plan["variants"]["+bulk_rng"]["width"] = 99
            fragment = "configs differ from the stored plan"
        (out / "plan.json").write_text(json.dumps(plan))
        assert_one_line_error(call_cli("--resume", str(out)), fragment)


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--rounds", "5"], f"rounds=5 (the job has {ROUNDS})"),
        (["--preset", "cpu"], "preset='cpu' (the job has 'smoke')"),
        (["--steps", "bulk_rng"], "steps=('bulk_rng',)"),
        (["--set", "width=8"], "overrides=('width=8',)"),
        (["--no-control"], "control=False (the job has True)"),
        (["--leave-one-out"], "leave_one_out=True (the job has False)"),
        (["--profile-passes", "2"], "profile_passes=2 (the job has 1)"),
        (["--seed", "3"], "seed=3 (the job has 0)"),
        (["--with-stack"], "with_stack=True (the job has False)"),
        (["--no-warmup"], "warmup=False (the job has True)"),
        (["--no-profile"], "profile=False (the job has True)"),
        (["--peak-tflops", "100"], "peak_tflops=100.0 (the job has None)"),
    ],
)
def test_resume_refuses_flags_that_would_change_the_job(all_out, tmp_path, flags, fragment):
    out = tmp_path / "out"
    _copy_job(all_out, out)
    before = (out / "results.jsonl").read_bytes()
    assert_one_line_error(
        call_cli("--resume", str(out), *flags), "flags would change the job", fragment
    )
    assert (out / "results.jsonl").read_bytes() == before


def test_resume_refuses_another_order_seed(all_out, tmp_path):
    out = tmp_path / "out"
    plan = _copy_job(all_out, out)
    other = plan["job"]["order_seed"] + 1
    assert_one_line_error(
        call_cli("--resume", str(out), "--order-seed", str(other)),
        f"order_seed={other} (the job has {plan['job']['order_seed']})",
    )


def test_resume_uses_the_jobs_own_data_and_refuses_other_data(
    all_out, tmp_path, real_cifar, monkeypatch
):
    out = tmp_path / "out"
    plan = _copy_job(all_out, out)
    # The job's own data is used whatever $LAB_DATA says now.
    with monkeypatch.context() as elsewhere_env:
        elsewhere_env.setenv("LAB_DATA", str(tmp_path / "none"))
        elsewhere = call_cli("--resume", str(out), "--plan")
    assert elsewhere.returncode == 0, elsewhere.stderr
    other = tmp_path / "other-data"
    for split in ("train", "test"):
        (other / split / "airplane").mkdir(parents=True)
    assert_one_line_error(
        call_cli("--resume", str(out), "--data", str(other)), "flags would change the job", "data"
    )
    plan["job"]["data"]["fingerprint"] = "0" * 24  # the files changed since the job started
    (out / "plan.json").write_text(json.dumps(plan))
    assert_one_line_error(call_cli("--resume", str(out)), "the job's data changed")


def test_where_the_time_goes_and_the_floor_are_reported(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    chain = [v for v in summary["variants"] if v["role"] in ("baseline", "step")]
    for variant in chain:
        profile = variant["profile"]
        assert profile["seconds"]["step"] > 0 and profile["profiler_overhead"] is not None
        assert sum(profile["shares"].values()) == pytest.approx(1.0)
        floor = variant["floor"]
        assert floor["floor_s"] == pytest.approx(
            floor["total_flops"] / (floor["peak_tflops"] * 1e12)
        )
        assert 0 < floor["efficiency"] < 1
    assert "profile" not in summary["variants"][-1]  # the control repeats the baseline
    for step in summary["steps"]:
        where = step["where"]
        rule = where["attribution"]
        named = where["came_from"]
        if named == "unclear":
            assert where["reason"] == "one_pass"
            assert all(f <= rule["threshold_per_step_s"] for f in rule["fall_per_step_s"].values())
        else:  # named only when its fall beat the profiler's own added time
            assert rule["fall_per_step_s"][named] > rule["threshold_per_step_s"]
    report = (all_out / "report.md").read_text()
    assert "## Where the time goes" in report and "## The floor" in report
    assert "profiler overhead" in report
    assert "![breakdown](breakdown.png)" in report
    assert (all_out / "breakdown.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (all_out / "breakdown.svg").read_bytes()[:500]


def test_operator_diff_of_real_passes_shows_the_removed_batch_norm(all_out):
    """From the profiled passes of the smoke job: every step has an operator diff, and
    bn_dedupe's shows one batch norm fewer per recorded step, forward and backward."""
    summary = json.loads((all_out / "summary.json").read_text())
    assert all(step["op_diff"] for step in summary["steps"])
    rows = {r["name"]: r for r in summary["steps"][0]["op_diff"]}
    assert summary["steps"][0]["name"] == "bn_dedupe"
    for name in ("aten::native_batch_norm", "aten::native_batch_norm_backward"):
        assert rows[name]["calls_change"] == -1, rows.get(name)
        assert rows[name]["calls_after"] > 0
    report = (all_out / "report.md").read_text()
    section = report.split("**bn_dedupe**")[1].split("**smooth_lr**")[0]
    assert "| `aten::batch_norm` | 17 | 16 | -1 |" in section, section
    # bulk_rng: the per-sample draws were in the workers, the bulk ones before the recording.
    assert "no RNG operator call changed in the trace" in report


def test_worker_processes_and_their_cores_are_measured(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    chain = [v for v in summary["variants"] if "profile" in v]
    for variant in chain:
        cpu = variant["profile"]["cpu"]
        assert cpu["worker_processes"] == variant["config"]["train_workers"], variant["name"]
        assert cpu["machine_cores"] == os.cpu_count()
        assert cpu["main_cores"] > 0 and cpu["workers_cores"] >= 0
        assert cpu["unprofiled"]["worker_processes"] == cpu["worker_processes"]
    report = (all_out / "report.md").read_text()
    assert "### Who used the cores" in report
    assert "main_thread_aug: before it, 1 worker process used" in report
    assert "after it, no worker process ran (the main thread loaded the data)" in report


def _get_json(url):
    """The server's answer, once it answers: a busy machine's server may take long to start or
    to compute a view (each try waits as long as `HUNG_S`; a refused connection is retried)."""
    import urllib.request

    def answer():
        try:
            with urllib.request.urlopen(url, timeout=HUNG_S) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    return wait_for(answer, f"an answer from {url}", poll_s=0.5)


def test_tensorboard_serves_every_variant_with_dataloader_time(all_out):
    from lab.tensorboard import free_port

    port = free_port()
    args = [str(all_out), "--host", "127.0.0.1", "--port", str(port)]
    server = LabProcess(*args, module="lab.tensorboard", own_session=True)
    try:
        line = server.wait_until(lambda: server.lines["stdout"][:1], "the server's first line")
        assert f"http://127.0.0.1:{port}/" in line[0], line
        base = f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler"

        def loaded():
            runs = _get_json(f"{base}/runs")
            return runs if not runs["loading"] and len(runs["runs"]) == len(VARIANTS) else None

        # Loading moves through the runs one by one: a change in the answer is progress.
        runs = wait_for(loaded, "every run loaded", poll_s=1)
        assert runs["runs"] == [
            f"{index:02d}-{name}" for index, name in enumerate(["baseline", *STEP_NAMES])
        ]
        for run in (runs["runs"][0], runs["runs"][-1]):
            (worker,) = _get_json(f"{base}/workers?run={run}&view=Overview")
            (span,) = _get_json(f"{base}/spans?run={run}&worker={worker}")
            overview = _get_json(f"{base}/overview?run={run}&worker={worker}&span={span}")
            parts = {c["name"]: c["value"] for c in overview["performance"][0]["children"]}
            assert parts["DataLoader"] > 0, (run, parts)
        scalars = _get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        assert {"train_loss", "test_accuracy", "epoch_s", "images_per_s"} <= set(
            scalars["00-baseline"]
        )
        # The control's scalars, beside the chain's.
        assert f"{len(VARIANTS):02d}-baseline-control" in scalars
        images = _get_json(f"http://127.0.0.1:{port}/data/plugin/images/tags")
        assert "waterfall" in images["waterfall"]
        assert "breakdown" in images["breakdown"]
    finally:
        # Stopped as its banner says, with Ctrl-C: it exits, and so does every process it
        # started (a SIGTERM would leave the profiler plugin's workers running).
        server.send_signal(signal.SIGINT)
        ended = server.finish()
    assert ended.returncode == 0, ended.stderr
    wait_for(lambda: not server.leftovers(), "the exit of every process the server started")
