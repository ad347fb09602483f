"""Run records: versioned, append-only JSON lines with the metadata a reader needs to trust them.

`results.jsonl` holds one record per run, appended (and fsynced) the moment the run ends, so an
interrupted job loses at most the run in flight. Reports are generated from these records only.
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
from lab.errors import LabError

if TYPE_CHECKING:  # imported where used: reading records (reports, comparisons) needs no torch
    import torch

RECORD_SCHEMA_VERSION = 2
REPO_ROOT = lab.REPO_ROOT
CODE_DIRS = ("lab", "ablations")


def git_revision() -> str | None:
    """`git rev-parse HEAD`, with `+dirty` when tracked files differ; None outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
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
        if record.get("schema_version") != RECORD_SCHEMA_VERSION:
            raise LabError(
                f"{path}:{number}: schema_version {record.get('schema_version')!r}; "
                f"this lab reads {RECORD_SCHEMA_VERSION}"
            )
        records.append(record)
    return records
