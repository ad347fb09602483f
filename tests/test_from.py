"""`--from STEP`: a chain that starts later in the series (issue 24.4). The runs of a started
chain, resumed and on Ray, are checked in test_ablate_all.py and test_ray.py."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error, call_cli

PART8 = ["--series", "full", "--from", "resnet9", "--preset", "cpu-series-long"]


def _plan(*args: str) -> dict:
    result = call_cli(*args, "--plan", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_baseline_is_the_recipe_just_before_the_step():
    plan, whole = _plan(*PART8), _plan("--series", "full", "--preset", "cpu-series-long")
    assert plan["steps"][0] == "resnet9" and plan["steps"][-1] == "tta"
    assert plan["start"] == whole["steps"][: whole["steps"].index("resnet9")]
    by_name = {v["name"]: v for v in plan["variants"]}
    whole_by_name = {v["name"]: v for v in whole["variants"]}
    # The started chain's baseline and control are the whole chain's +batch_768 variant.
    for name in ("baseline", "baseline (control)"):
        assert by_name[name]["config"] == whole_by_name["+batch_768"]["config"]
        assert by_name[name]["steps"] == plan["start"]
    # Every later variant is the same recipe as in the whole chain.
    for name in ("+resnet9", "+whitening", "+tta"):
        assert by_name[name]["config"] == whole_by_name[name]["config"]
        assert by_name[name]["steps"] == whole_by_name[name]["steps"]
    assert len(plan["variants"]) == len(plan["steps"]) + 2  # the chain and the control


def test_the_first_step_starts_where_the_chain_does():
    assert "start" not in _plan("--all", "--from", "bn_dedupe", "--preset", "smoke")


def test_the_plan_says_where_the_chain_starts():
    result = call_cli(*PART8, "--plan")
    assert "starting after batch_768 (--from resnet9)" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--series", "full", "--from", "resnet99"], "--from resnet99: not a step of this chain"),
        (["--all", "--from", "resnet9"], "valid: bn_dedupe, smooth_lr"),
        (["--from", "resnet9"], "--from resnet9: only with --all, --series or --steps"),
    ],
)
def test_a_bad_from_is_a_one_line_error(args, fragment):
    assert_one_line_error(call_cli(*args, "--plan"), fragment)
