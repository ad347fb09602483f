"""The names of the files in a job's output folder: one owner, so the runner, the report, the
comparison and the tests agree (docs/records.md documents each)."""

from __future__ import annotations

import re

PLAN = "plan.json"  # the job (lab.records.plan.JobSpec), written when it starts
RESULTS = "results.jsonl"  # one record per timed run
PROFILE = "profile.jsonl"  # one record per profiled pass
SESSIONS = "sessions.jsonl"  # one record per invocation: data loading and wall time
SUMMARY = "summary.json"
REPORT = "report.md"
WATERFALL = "waterfall"  # .png and .svg
BREAKDOWN = "breakdown"  # .png and .svg: the timed region per phase, per variant (or profiled)
# .png and .svg: each step's saving split by phase (records with phases)
STEP_PHASES = "step-phases"
LEAVE_ONE_OUT = "leave-one-out"  # .png and .svg, with --leave-one-out
TENSORBOARD = "tb"  # the TensorBoard logdir
CHART_FORMATS = ("png", "svg")


def tb_run_name(index: int, variant_name: str) -> str:
    """Folder of a variant under tb/: ordered, file-name safe ("+bulk_rng" -> "05-bulk_rng",
    "baseline (control)" -> "07-baseline-control", "-bulk_rng" -> "08-without-bulk_rng")."""
    name = variant_name.lstrip("+")
    if name.startswith("-"):
        name = "without-" + name[1:]
    safe = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")
    return f"{index:02d}-{safe}"
