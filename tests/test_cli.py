"""The CLI as a user runs it: plans, lists, errors, and real runs on real data."""

from __future__ import annotations

import json

import pytest

from lab.engine.records import RECORD_SCHEMA_VERSION
from lab.recipe.registry import CONTROL_NAME
from tests.conftest import (
    SERIES_STEP_NAMES,
    STEP_NAMES,
    VARIANT_NAMES,
    assert_one_line_error,
    read_jsonl,
    run_lab,
)


@pytest.fixture(scope="module")
def dawnbench_plan():
    result = run_lab("--plan", "--json", "--all", "--preset", "dawnbench", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return {v["name"]: v for v in json.loads(result.stdout)["variants"]}


def test_dawnbench_plan_matches_the_article(dawnbench_plan):
    base = dawnbench_plan["baseline"]
    assert base["params"] == 5_205_962
    assert base["flops_per_image"] == pytest.approx(2.76e9, rel=0.01)
    assert base["config"]["lr_knots"] == [[0, 0], [15, 0.1], [15, 0.105], [30, 0.005], [35, 0]]
    assert base["config"]["batch_size"] == 128 and base["config"]["epochs"] == 35
    assert base["config"]["train_workers"] == 16 == base["config"]["test_workers"]
    assert base["expected_worker_launches"] == 1_120
    assert base["expected_rng_calls"] == 5_250_000


def test_dawnbench_plan_has_seven_cumulative_variants_and_a_control(dawnbench_plan):
    assert list(dawnbench_plan) == [*VARIANT_NAMES, CONTROL_NAME]
    assert dawnbench_plan[CONTROL_NAME]["config"] == dawnbench_plan["baseline"]["config"]
    assert dawnbench_plan[CONTROL_NAME]["role"] == "control"
    assert dawnbench_plan["+bn_dedupe"]["params"] == 5_205_834
    assert dawnbench_plan["+smooth_lr"]["config"]["lr_knots"] == [
        [0, 0],
        [15, 0.1],
        [30, 0.005],
        [35, 0],
    ]
    assert dawnbench_plan["+single_worker"]["expected_worker_launches"] == 70
    assert dawnbench_plan["+main_thread_aug"]["expected_worker_launches"] == 0
    assert dawnbench_plan["+cached_preprocessing"]["expected_rng_calls"] == 5_250_000
    assert dawnbench_plan["+bulk_rng"]["expected_rng_calls"] == 105


def test_plan_with_leave_one_out_lists_every_step_but_one():
    result = run_lab("--plan", "--json", "--all", "--leave-one-out", "--preset", "smoke")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    names = [v["name"] for v in plan["variants"]]
    assert names == [*VARIANT_NAMES, CONTROL_NAME, *(f"-{s}" for s in STEP_NAMES[:-1])]
    assert plan["runs_per_round"] == len(names) and plan["rounds"] == 1
    without_rng = next(v for v in plan["variants"] if v["name"] == "-bulk_rng")
    assert without_rng["steps"] == [s for s in STEP_NAMES if s != "bulk_rng"]
    assert without_rng["config"]["augment_rng"] == "per_sample"
    assert without_rng["config"]["train_workers"] == 0


def test_list_prints_steps_in_order_with_claims():
    result = run_lab("--list")
    assert result.returncode == 0
    numbered = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[1] for row in numbered] == STEP_NAMES + SERIES_STEP_NAMES
    assert "Part 1: -7 s -> 301 s on a V100" in result.stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--steps", "bulk_rng,warp_drive"], "valid steps: bn_dedupe, smooth_lr"),
        (["--set", "widht=3"], "unknown key; valid keys:"),
        (["--set", "width=wide"], "--set width=wide: cannot parse as int"),
        (["--rounds", "0"], "--rounds 0: must be >= 1"),
        (["--profile-passes", "0"], "--profile-passes 0: must be >= 1"),
        (["--runs", "0"], "--rounds 0: must be >= 1"),
        (["--all", "--steps", "bulk_rng"], "--all and --steps"),
        (["--resume", "/nonexistent/out"], "no plan.json"),
    ],
)
def test_bad_flags_are_one_line_errors(args, fragment):
    assert_one_line_error(run_lab("--preset", "smoke", "--plan", *args), fragment)


def test_help_explains_every_flag():
    result = run_lab("--help")
    for flag in (
        "--preset",
        "--data",
        "--out",
        "--rounds",
        "--seed",
        "--order-seed",
        "--no-control",
        "--leave-one-out",
        "--device",
        "--set",
        "--all",
        "--steps",
        "--list",
        "--plan",
        "--resume",
        "--download",
    ):
        assert flag in result.stdout


REQUIRED_MEASUREMENTS = {
    "total_s",
    "train_s",
    "eval_s",
    "epochs",
    "data_wait_s",
    "worker_launches",
    "rng_calls",
    "cpu_main_s",
    "cpu_children_s",
    "images_per_s",
    "final_test_accuracy",
    "reached_target",
    "preprocess_s",
}
REQUIRED_META = {
    "schema_version",
    "lab_version",
    "git_revision",
    "torch_version",
    "device_name",
    "cpu_model",
    "cpu_cores",
    "date",
    "code_hash",
    "command",
}


def _records(out):
    return read_jsonl(out / "results.jsonl")


def test_smoke_baseline_run_writes_a_complete_record(tmp_path):
    out = tmp_path / "out"
    result = run_lab("--preset", "smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr
    (record,) = _records(out)
    assert record["schema_version"] == RECORD_SCHEMA_VERSION
    assert REQUIRED_META <= set(record)
    assert REQUIRED_MEASUREMENTS <= set(record["measurements"])
    assert record["variant"] == "baseline" and not record["warmup"]
    m = record["measurements"]
    assert len(m["epochs"]) == record["config"]["epochs"] == 2
    assert m["total_s"] == pytest.approx(m["train_s"] + m["eval_s"])
    assert m["total_s"] > 0 and m["images_per_s"] > 0 and m["cpu_main_s"] > 0
    # Measured counters equal what the plan predicts from the config.
    assert m["worker_launches"] == record["expected"]["worker_launches"] == 8
    assert m["rng_calls"] == record["expected"]["rng_calls"] == 3 * 500 * 2
    assert m["cpu_children_s"] > 0  # the workers burned CPU and were reaped
    for name in ("summary.json", "report.md", "waterfall.png", "waterfall.svg"):
        assert (out / name).is_file()


def test_same_seed_same_result(tmp_path):
    runs = []
    for index in range(2):
        out = tmp_path / f"out{index}"
        args = ("--preset", "smoke", "--seed", "7", "--no-profile", "--out", str(out))
        assert run_lab(*args).returncode == 0
        runs.append(_records(out)[0]["measurements"])
    assert runs[0]["final_test_accuracy"] == runs[1]["final_test_accuracy"]
    assert [e["train_loss"] for e in runs[0]["epochs"]] == [
        e["train_loss"] for e in runs[1]["epochs"]
    ]


def test_refuses_to_mix_into_an_existing_output(tmp_path):
    out = tmp_path / "out"
    assert run_lab("--preset", "smoke", "--no-profile", "--out", str(out)).returncode == 0
    assert_one_line_error(run_lab("--preset", "smoke", "--out", str(out)), "use --resume")


def test_cpu_preset_network_learns_on_real_data(tmp_path):
    """The cpu preset is a timing scale (1 epoch: just above chance); the same network and
    subset given 3 epochs learns well above chance (10%), as docs/presets.md says."""
    out = tmp_path / "out"
    args = ("--preset", "cpu", "--rounds", "1", "--no-profile", "--set", "epochs=3")
    result = run_lab(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    (record,) = _records(out)
    m = record["measurements"]
    assert m["final_test_accuracy"] > 0.25
    assert record["config"]["lr_knots"][-1] == [3, 0]  # the schedule stretched to 3 epochs
    # 3 epochs x (16 + 16) workers
    assert m["worker_launches"] == record["expected"]["worker_launches"] == 96
    assert m["rng_calls"] == record["expected"]["rng_calls"]


# ----------------------------------------------------------------------------- the whole series


def test_series_full_plan_at_the_articles_scale():
    result = run_lab(
        "--plan", "--json", "--series", "full", "--preset", "dawnbench", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    variants = json.loads(result.stdout)["variants"]
    chain = [v for v in variants if v["role"] in ("baseline", "step")]
    assert [v["name"] for v in chain] == [
        "baseline",
        *(f"+{name}" for name in STEP_NAMES + SERIES_STEP_NAMES),
    ]
    by_name = {v["name"]: v for v in chain}
    assert by_name["+resnet9"]["params"] == 6_573_120
    assert by_name["+resnet9"]["flops_per_image"] == 2_272_032_768
    final = by_name["+tta"]
    assert final["params"] == 6_570_880
    assert final["batch_size"] == 512 and final["epochs"] == 10
    assert final["train_steps"] == 10 * (50_000 // 512)  # the last partial batch dropped
    assert final["expected_worker_launches"] == 0
    assert by_name["+batch_768"]["config"]["lr_knots"] == [[0, 0], [8, 0.6], [30, 0]]


def test_list_shows_each_steps_part_time_and_accuracy():
    result = run_lab("--list")
    assert result.returncode == 0, result.stderr
    assert "Part 8: -7.5 s -> 26 s on a V100, 94.1% (with TTA)" in result.stdout
    rows = json.loads(run_lab("--list", "--json").stdout)
    assert [r["part"] for r in rows][6:11] == [2, 3, 3, 3, 4]
    fp32 = next(r for r in rows if r["name"] == "fp32_batchnorm")
    assert fp32["needs_precision"] == "fp16" and fp32["article_time_s"] == 186


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--all", "--series", "full"], ["--all and --series", "give one of them"]),
        (["--steps", "ghost_batchnorm"], ["bn_splits=16", "drop_last"]),
        (["--steps", "gpu_augmentation", "--set", "train_images=100"], ["train_images=100"]),
    ],
)
def test_series_flags_that_cannot_run_fail_in_one_line(args, fragments):
    assert_one_line_error(run_lab("--plan", "--preset", "smoke", *args), *fragments)
