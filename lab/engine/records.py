"""Run records: versioned, append-only JSON lines with the metadata a reader needs to trust them.

`results.jsonl` holds one record per run, appended (and fsynced) the moment the run ends, so an
interrupted job loses at most the run in flight. Reports are generated from these records and
the job's plan.json only. Older schemas are read through one door, `upgrade_record` and
`upgrade_plan`, so no reader downstream carries a fallback for a field an old writer omitted.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import lab
from lab.engine import schema2
from lab.errors import LabError

if TYPE_CHECKING:  # imported where used: reading records (reports, comparisons) needs no torch
    import torch

RECORD_SCHEMA_VERSION = 3
PLAN_SCHEMA_VERSION = 3
READABLE_SCHEMAS = (2, 3)  # what `read_records` and `read_plan` upgrade to the current one
REPO_ROOT = lab.REPO_ROOT
CODE_DIRS = ("lab", "ablations")


def _git(*args: str) -> str:
    """A git command's output in the checkout (raises when git or the checkout is missing)."""
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def git_revision() -> str | None:
    """`git rev-parse HEAD`, with `+dirty` when tracked files differ; None outside a checkout."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS)
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def code_hash() -> str:
    """Hash of the harness and step sources: two runs with the same hash ran the same code."""
    digest = hashlib.sha256()
    for directory in CODE_DIRS:
        for path in sorted((REPO_ROOT / directory).rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()})"


def command_line() -> str:
    """How this process was started, as a user would type it (`python -m lab.ablate ...`)."""
    program = Path(sys.argv[0])
    if program.name in ("ablate.py", "report.py") and program.parent.name == "lab":
        return " ".join(["python -m lab." + program.stem, *sys.argv[1:]])
    return " ".join([program.name, *sys.argv[1:]])


def metadata(device: torch.device) -> dict[str, Any]:
    """Versions, machine and date: what a reader needs to reproduce or distrust a number."""
    import torch

    from lab.profiling.cpuload import machine_cores

    cpu_cores, usable_cores = machine_cores()
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "lab_version": lab.__version__,
        "git_revision": git_revision(),
        "code_hash": code_hash(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "cuda_version": torch.version.cuda,
        "device": str(device),
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "cpu_cores": cpu_cores,
        "usable_cores": usable_cores,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
    }


def run_record(
    *,
    job: dict[str, Any],
    slot: dict[str, Any],
    variant: dict[str, Any],
    plan: dict[str, Any],
    data: dict[str, Any],
    measurements: dict[str, Any],
    peak: dict[str, Any],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """One timed run's record (the schema of docs/records.md).

    `slot`: round, position and seed; `variant`: name, role, steps, config; `plan`: the
    variant's plan entry (sizes and expected counters, `lab.engine.plan.plan_entry`); `data`: the
    data source and subset sizes; `peak`: the device's peak for the floor."""
    return {
        **meta,
        "preset": job["preset"],
        "order_seed": job["order_seed"],
        "job_rounds": job["rounds"],
        "variant": variant["name"],
        "role": variant["role"],
        "steps": list(variant["steps"]),
        "round": slot["round"],
        "position": slot["position"],
        "warmup": slot["round"] < 0,
        "seed": slot["seed"],
        "config": variant["config"],
        "params": plan["params"],
        "flops_per_image": plan["flops_per_image"],
        "total_flops": plan["total_flops"],
        "expected": {
            "worker_launches": plan["expected_worker_launches"],
            "rng_calls": plan["expected_rng_calls"],
            "train_steps": plan["train_steps"],
        },
        "data": data,
        "peak": peak,
        "measurements": measurements,
    }


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and make it durable before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_line(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _drop_torn_line(path: Path) -> None:
    """A process killed while writing leaves a last line without its newline; it holds no
    complete record, and appending after it would corrupt the next one, so cut it off."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        content = handle.read()
        handle.truncate(content.rfind(b"\n") + 1)


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete records; a torn last line (a kill mid-write) is skipped, others are errors."""
    if not path.is_file():
        raise LabError(f"{path}: no such results file")
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the run in flight was killed while its line was being written
            raise LabError(f"{path}:{number}: not a JSON record") from None
        if record.get("schema_version") not in READABLE_SCHEMAS:
            raise LabError(
                f"{path}:{number}: schema_version {record.get('schema_version')!r}; "
                f"this lab reads {', '.join(map(str, READABLE_SCHEMAS))}"
            )
        records.append(upgrade_record(record))
    return records


# ----------------------------------------------------------------------------- older schemas


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record of any readable schema in the current one (a new dict; the file is untouched).

    Schema 2 writers of different dates omitted fields that schema 3 always holds:
    - a run record without a measured counter (`train_steps` came later) gets it as null, "not
      measured": the counter is then absent from its summary, as it was;
    - a profile record without `pass` was the only pass, 0; without `phases_s` (phases were
      not yet kept apart) it gets forward + backward + optimiser as one `compute` phase; without
      `cpu` or `operators` (not yet read), null and no rows.
    """
    if record["schema_version"] == RECORD_SCHEMA_VERSION:
        return record
    upgraded = {**record, "schema_version": RECORD_SCHEMA_VERSION}
    if "measurements" in record:
        upgraded["measurements"] = {**dict.fromkeys(MEASURED_SINCE_2), **record["measurements"]}
    if "breakdown" in record:
        breakdown = record["breakdown"]
        phases = {"data_wait": breakdown["data_s"], "h2d": breakdown["h2d_s"]}
        upgraded["breakdown"] = {  # the record's own phases_s, where it has them, win
            "phases_s": {**phases, "compute": breakdown["compute_s"]},
            **breakdown,
        }
        upgraded = {"pass": 0, "cpu": None, "operators": [], **upgraded}
    return upgraded


# Measurements added to run records during schema 2 (older records of it lack them).
MEASURED_SINCE_2 = ("train_steps", "whitening_s", "setup_s")


def read_plan(path: Path) -> dict[str, Any]:
    """A job's plan.json in the current schema: the job, its variants' configs and the facts
    its report states about each step and the article (`upgrade_plan` for older plans)."""
    if not path.is_file():
        raise LabError(f"{path}: no such plan (not a lab output folder)")
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise LabError(f"{path}: not a JSON plan") from None
    if plan.get("schema_version") not in READABLE_SCHEMAS:
        raise LabError(
            f"{path}: plan schema {plan.get('schema_version')!r}; "
            f"this lab reads {', '.join(map(str, READABLE_SCHEMAS))}"
        )
    return upgrade_plan(plan)


def upgrade_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan of any readable schema in the current one. A schema-2 plan stored no step or
    article facts: they come from `lab.engine.schema2`, the frozen table of what the last
    schema-2 code said, never from today's registry."""
    if plan["schema_version"] == PLAN_SCHEMA_VERSION:
        return plan
    unknown = [name for name in plan["job"]["steps"] if name not in schema2.STEP_FACTS]
    if unknown:
        raise LabError(
            f"plan.json: steps {', '.join(unknown)} unknown to the last schema-2 lab; "
            "its report cannot be rebuilt by this one"
        )
    return {
        **plan,
        "schema_version": PLAN_SCHEMA_VERSION,
        "step_facts": {name: schema2.STEP_FACTS[name] for name in plan["job"]["steps"]},
        "article": schema2.ARTICLE_FACTS,
    }
