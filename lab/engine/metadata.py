"""What each record says about the code and the machine that wrote it: versions, the code's
hash and revision, the device, the date and the command line (`lab.records.jsonl.run_record`
puts it at the top of every run record; docs/records.md lists the fields)."""

from __future__ import annotations

import datetime
import platform
from typing import Any

import numpy as np
import torch

import lab
from lab.engine.provenance import code_hash, command_line, cpu_model, git_revision
from lab.profiling.cpuload import machine_cores
from lab.records.jsonl import RECORD_SCHEMA_VERSION


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()})"


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
