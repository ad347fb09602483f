"""Run records: versioned, append-only JSON lines (`results.jsonl`, `profile.jsonl`,
`sessions.jsonl`) with the metadata a reader needs to trust them.

`results.jsonl` holds one record per run, appended (and fsynced) the moment the run ends, so an
interrupted job loses at most the run in flight. Reports are generated from these records and
the job's plan.json only (`lab.records.plan`). Older schemas are read through one door,
`upgrade_record` here and `upgrade_plan` for plans, so no reader downstream carries a fallback
for a field an old writer omitted. The metadata at the top of each run record (versions, the
device) is gathered by the engine, `lab.engine.metadata`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.errors import LabError

RECORD_SCHEMA_VERSION = 3
READABLE_SCHEMAS = (2, 3)  # what `read_records` and `read_plan` upgrade to the current one


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
