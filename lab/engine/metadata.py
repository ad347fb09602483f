"""What each record says about the code and the machine that wrote it: versions, the code's
hash and revision, the device, the date and the command line (`lab.records.jsonl.run_record`
puts it at the top of every run record; docs/records.md lists the fields)."""

from __future__ import annotations

import datetime
import hashlib
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lab
from lab.profiling.cpuload import machine_cores
from lab.records.jsonl import RECORD_SCHEMA_VERSION

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
