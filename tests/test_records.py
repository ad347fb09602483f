"""Append-only records survive a kill mid-write: the torn line is dropped, never merged; older
schemas are read through one upgrade."""

from __future__ import annotations

import json

import pytest

from lab import REPO_ROOT
from lab.errors import LabError
from lab.recipe.counters import counter_values
from lab.records import schema2
from lab.records.jsonl import RECORD_SCHEMA_VERSION, append_record, read_records, upgrade_record
from lab.records.plan import (
    PLAN_SCHEMA_VERSION,
    DataSource,
    JobSpec,
    plan_job,
    read_plan,
    write_plan,
)


def _record(index: int) -> dict:
    return {"schema_version": RECORD_SCHEMA_VERSION, "index": index}


def test_a_torn_last_line_is_skipped_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, _record(0))
    with open(path, "a") as handle:
        handle.write(json.dumps(_record(1))[:9])  # killed while writing record 1
    assert [r["index"] for r in read_records(path)] == [0]
    append_record(path, _record(2))
    assert [r["index"] for r in read_records(path)] == [0, 2]
    assert path.read_text().count("\n") == 2


def test_a_damaged_line_in_the_middle_is_an_error_naming_it(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_record(0)) + "\nnot json\n" + json.dumps(_record(1)) + "\n")
    with pytest.raises(LabError, match="results.jsonl:2: not a JSON record"):
        read_records(path)


def test_records_of_another_schema_are_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"schema_version": 1}) + "\n")
    with pytest.raises(LabError, match="schema_version 1; this lab reads 2, 3"):
        read_records(path)


def test_schema_2_records_are_upgraded_in_one_place(tmp_path):
    """Fields a schema-2 writer omitted arrive as schema 3 holds them: no reader needs a
    fallback."""
    run = {"schema_version": 2, "measurements": {"rng_calls": 3000}}
    profile = {
        "schema_version": 2,
        "breakdown": {"data_s": 1.0, "h2d_s": 0.5, "compute_s": 4.0},
    }
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (run, profile)))
    new_run, new_profile = read_records(path)
    assert new_run["schema_version"] == new_profile["schema_version"] == RECORD_SCHEMA_VERSION
    assert new_run["measurements"] == {
        "rng_calls": 3000,
        "train_steps": None,
        "whitening_s": None,
        "setup_s": None,
    }
    assert new_profile["pass"] == 0 and new_profile["cpu"] is None
    assert new_profile["operators"] == []
    assert new_profile["breakdown"]["phases_s"] == {"data_wait": 1.0, "h2d": 0.5, "compute": 4.0}
    assert upgrade_record(new_run) is new_run  # current records pass through untouched


def test_a_null_counter_is_not_measured():
    record = {"measurements": {"train_steps": None, "rng_calls": 7}, "params": 1, "config": {}}
    record["flops_per_image"] = 2.0
    record["config"]["epochs"] = 1
    for key in ("worker_launches", "data_wait_s", "cpu_children_s", "cpu_main_s"):
        record["measurements"][key] = 0.0
    record["measurements"].update(images_per_s=1.0, preprocess_s=0.0)
    values = counter_values(record)
    assert "train_steps" not in values and values["rng_calls"] == 7


def test_a_schema_2_plan_gets_the_frozen_facts_not_the_registry(tmp_path):
    plan = {"schema_version": 2, "job": {"steps": ["bn_dedupe"]}, "variants": {}}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    upgraded = read_plan(path)
    assert upgraded["schema_version"] == PLAN_SCHEMA_VERSION
    assert upgraded["step_facts"] == {"bn_dedupe": schema2.STEP_FACTS["bn_dedupe"]}
    assert upgraded["article"] is schema2.ARTICLE_FACTS
    path.write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(LabError, match="plan schema 1; this lab reads 2, 3"):
        read_plan(path)
    with pytest.raises(LabError, match="no such plan"):
        read_plan(tmp_path / "missing.json")


EXAMPLE_PLANS = sorted((REPO_ROOT / "reports").glob("example-*/plan.json"))


@pytest.mark.parametrize("path", EXAMPLE_PLANS, ids=lambda p: p.parent.name)
def test_a_committed_plans_job_reads_as_a_jobspec_and_writes_back_the_same(path, tmp_path):
    """The job is described once (JobSpec): every committed plan's job reads into it, and a
    plan written from it is byte-identical to the committed file."""
    plan = read_plan(path)
    job = plan_job(plan)
    assert json.loads(json.dumps(job.to_dict())) == plan["job"]
    others = {key: plan[key] for key in ("variants", "step_facts", "article")}
    write_plan(tmp_path, job, plan["code_hash"], **others)
    assert (tmp_path / "plan.json").read_bytes() == path.read_bytes()


def test_a_schema_2_job_reads_with_the_later_fields_at_their_defaults():
    """The last schema-2 writer (93b7ea8) stored no Ray, adaptive or overrides fields yet."""
    old = {"preset": "smoke", "steps": ["bulk_rng"], "rounds": 2, "seed": 0, "order_seed": 5}
    job = JobSpec.from_dict({**old, "device": "cpu", "data": {"path": "d", "fingerprint": "f"}})
    assert (job.steps, job.overrides, job.data) == (("bulk_rng",), (), DataSource("d", "f"))
    assert not job.adaptive and not job.ray and job.round_cpus is None
    with pytest.raises(TypeError):
        JobSpec.from_dict(old)  # no device: not a job
