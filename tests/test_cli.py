"""The CLI as a user runs it: plans, lists, errors, every flag, and real runs on real data."""

from __future__ import annotations

import ast
import json
import re
import shutil

import pytest
import torch

from lab.recipe.variant import CONTROL_NAME
from lab.records.jsonl import RECORD_SCHEMA_VERSION
from tests.conftest import (
    AIRBENCH_STEP_NAMES,
    REPO,
    SERIES_STEP_NAMES,
    STEP_NAMES,
    VARIANT_NAMES,
    assert_one_line_error,
    call_cli,
    read_jsonl,
    rounds_of,
    run_lab,
)

CLIS = ("lab.ablate", "lab.report", "lab.compare", "lab.tensorboard")


@pytest.fixture(scope="module")
def dawnbench_plan():
    result = call_cli("--plan", "--json", "--all", "--preset", "dawnbench", "--device", "cpu")
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
    result = call_cli("--plan", "--json", "--all", "--leave-one-out", "--preset", "smoke")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    names = [v["name"] for v in plan["variants"]]
    assert names == [*VARIANT_NAMES, CONTROL_NAME, *(f"-{s}" for s in STEP_NAMES[:-1])]
    assert plan["runs_per_round"] == len(names) and plan["rounds"] == 1
    without_rng = next(v for v in plan["variants"] if v["name"] == "-bulk_rng")
    assert without_rng["steps"] == [s for s in STEP_NAMES if s != "bulk_rng"]
    assert without_rng["config"]["augment_rng"] == "per_sample"
    assert without_rng["config"]["train_workers"] == 0


def test_the_plan_says_when_every_rate_is_scaled():
    """`lr_scale` changes no step's knots: the plan says it once, and every variant records it."""
    args = ("--plan", "--all", "--preset", "smoke", "--set", "lr_scale=0.5")
    result = call_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "every rate x 0.5 (lr_scale)" in result.stdout
    plan = json.loads(call_cli(*args, "--json").stdout)
    assert {v["config"]["lr_scale"] for v in plan["variants"]} == {0.5}
    plain = call_cli("--plan", "--all", "--preset", "smoke")
    assert "lr_scale" not in plain.stdout


def test_list_prints_steps_in_order_with_claims():
    result = call_cli("--list")
    assert result.returncode == 0
    numbered = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[1] for row in numbered] == STEP_NAMES + SERIES_STEP_NAMES + AIRBENCH_STEP_NAMES
    assert "Part 1: -7 s -> 301 s on a V100" in result.stdout
    assert "main7_mirror: -0.4 s -> 3.9 s on an A100 (0.36 PFLOPs, 9.9 epochs)" in result.stdout


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
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: no CUDA device is available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
        ),
    ],
)
def test_bad_flags_are_one_line_errors(args, fragment):
    assert_one_line_error(call_cli("--preset", "smoke", "--plan", *args), fragment)


def test_a_bad_flag_in_a_real_process_exits_2_without_a_traceback():
    """What `call_cli` cannot show: the interpreter's own exit status and stderr."""
    assert_one_line_error(run_lab("--plan", "--rounds", "0"), "--rounds 0: must be >= 1")


def test_plan_json_carries_the_flags_that_shape_the_job():
    args = ["--plan", "--json", "--steps", "bulk_rng", "--preset", "smoke", "--device", "cpu"]
    args += ["--seed", "5", "--order-seed", "11", "--rounds", "2", "--with-stack"]
    args += ["--no-warmup", "--no-control", "--no-profile", "--profile-passes", "3"]
    plan = json.loads(call_cli(*args, "--set", "width=8").stdout)
    assert (plan["seed"], plan["rounds"], plan["device"]) == (5, 2, "cpu")
    assert plan["with_stack"] and plan["profile_passes"] == 3
    assert not plan["warmup"] and not plan["control"] and not plan["profile"]
    assert [v["name"] for v in plan["variants"]] == ["baseline", "+bulk_rng"]
    assert all(v["config"]["width"] == 8 for v in plan["variants"])
    assert "order_seed" not in plan  # a fresh one per job unless given; stored in plan.json


def _help_flags(module: str) -> set[str]:
    """The flags a CLI's `--help` shows."""
    result = call_cli("--help", module=module)
    assert result.returncode == 0, result.stderr
    # argparse wraps long lines inside a flag's name ("--min-\n   rounds"): join them first.
    text = re.sub(r"-\n\s+", "-", result.stdout)
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text)) - {"--help"}


def _strings_in_tests() -> set[str]:
    """Every string literal of the test files: the arguments the tests pass."""
    found = set()
    for path in (REPO / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


@pytest.mark.parametrize("module", CLIS)
def test_every_flag_in_help_is_documented_and_exercised_by_a_test(module):
    flags = _help_flags(module)
    assert flags or module in ("lab.report", "lab.compare")
    docs = (REPO / "README.md").read_text() + "".join(
        path.read_text() for path in sorted((REPO / "docs").glob("*.md"))
    )
    assert not {f for f in flags if not re.search(rf"{f}(?![\w-])", docs)}, "undocumented"
    assert not flags - _strings_in_tests(), "no test passes these flags"


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


def test_smoke_baseline_run_writes_a_complete_record(all_out):
    record = next(r for r in _records(all_out) if r["variant"] == "baseline" and not r["warmup"])
    out = all_out
    assert record["schema_version"] == RECORD_SCHEMA_VERSION
    assert REQUIRED_META <= set(record)
    assert REQUIRED_MEASUREMENTS <= set(record["measurements"])
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


def test_same_seed_same_result(all_out):
    """The job trains the baseline's config with one seed several times at different moments
    (the warm-up and round 0 share seed 0; the control repeats the baseline in every round):
    each time the same losses and accuracy, and another seed gives other ones."""

    def outcome(record):
        m = record["measurements"]
        return m["final_test_accuracy"], [e["train_loss"] for e in m["epochs"]]

    by_seed: dict[int, list] = {}
    for record in _records(all_out):
        if record["variant"] in ("baseline", CONTROL_NAME):
            by_seed.setdefault(record["seed"], []).append(outcome(record))
    assert sorted(by_seed) == list(range(rounds_of(all_out)[1]))
    assert len(by_seed[0]) == 3  # the warm-up, the baseline and the control
    for outcomes in by_seed.values():
        assert all(o == outcomes[0] for o in outcomes), outcomes
    assert by_seed[0][0][1] != by_seed[1][0][1]


def test_refuses_to_mix_into_an_existing_output(all_out, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(all_out / "results.jsonl", out / "results.jsonl")
    before = (out / "results.jsonl").read_bytes()
    assert_one_line_error(call_cli("--preset", "smoke", "--out", str(out)), "use --resume")
    assert (out / "results.jsonl").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl"]


@pytest.mark.slow
def test_cpu_preset_network_learns_on_real_data(tmp_path, real_data_path):
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
    result = call_cli(
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
    result = call_cli("--list")
    assert result.returncode == 0, result.stderr
    assert "Part 8: -7.5 s -> 26 s on a V100, 94.1% (with TTA)" in result.stdout
    rows = json.loads(call_cli("--list", "--json").stdout)
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
    assert_one_line_error(call_cli("--plan", "--preset", "smoke", *args), *fragments)
