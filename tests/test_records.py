"""Append-only records survive a kill mid-write: the torn line is dropped, never merged."""

from __future__ import annotations

import json

import pytest

from lab.engine.records import RECORD_SCHEMA_VERSION, append_record, read_records
from lab.errors import LabError


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
    with pytest.raises(LabError, match="schema_version 1; this lab reads 2"):
        read_records(path)
