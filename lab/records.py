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
from typing import Any

import numpy as np
import torch

import lab
from lab.errors import LabError

RECORD_SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
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
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cores = os.cpu_count()
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
        "cpu_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
    }


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and make it durable before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


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
