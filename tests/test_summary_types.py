"""summary.json is its types (lab/records/summary.py): the committed summaries read back into
them and write out byte for byte, a report renders from a summary read back, a malformed file
is a one-line error, and docs/records.md documents exactly the dataclasses' fields."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from lab import REPO_ROOT
from lab.errors import LabError
from lab.records.summary import Summary, read_summary
from lab.records.typed import OMITTED_IF_NONE
from lab.render.report import render_report

EXAMPLES = sorted(p for p in (REPO_ROOT / "reports").glob("example-*") if p.is_dir())
DOCS = REPO_ROOT / "docs" / "records.md"
RECORDS = REPO_ROOT / "lab" / "records"


def _dataclasses_in(root: type) -> list[type]:
    """Every dataclass a field of `root` holds, directly or inside a list, a dict or a union."""
    found: list[type] = []

    def visit(cls: type) -> None:
        if cls in found:
            return
        found.append(cls)
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            stack = [hints[field.name]]
            while stack:
                kind = stack.pop()
                if dataclasses.is_dataclass(kind):
                    visit(kind)
                stack.extend(typing.get_args(kind))

    visit(root)
    return found


def _documented() -> dict[str, list[tuple[str, str, str]]]:
    """docs/records.md's summary section: per `### `Name`` heading, its (field, type, what)."""
    text = DOCS.read_text()
    section = text[text.index("## `summary.json`") :]
    section = section[: section.index("\n## ", 1)]
    tables: dict[str, list[tuple[str, str, str]]] = {}
    name = None
    for line in section.splitlines():
        heading = re.fullmatch(r"### `(\w+)`", line)
        if heading:
            name = heading.group(1)
            tables[name] = []
            continue
        row = re.fullmatch(r"\| `(\w+)` \| `(.+?)` \|(.*)\|", line)
        if row and name:
            field, kind, what = row.groups()
            tables[name].append((field, kind.replace("\\|", "|"), what.strip()))
    return tables


def test_docs_describe_exactly_the_summary_types():
    documented = _documented()
    types = {cls.__name__: cls for cls in _dataclasses_in(Summary)}
    assert sorted(documented) == sorted(types), "a dataclass without a table, or the reverse"
    for name, cls in types.items():
        fields = [(f.name, f.type) for f in dataclasses.fields(cls)]
        assert [(field, kind) for field, kind, _ in documented[name]] == fields, name


def test_docs_say_which_fields_the_file_leaves_out_when_null():
    documented = _documented()
    for cls in _dataclasses_in(Summary):
        rows = zip(documented[cls.__name__], dataclasses.fields(cls), strict=True)
        for (field, _, what), f in rows:
            omitted = f.metadata == OMITTED_IF_NONE
            assert omitted == what.startswith("absent when null"), f"{cls.__name__}.{field}"


@pytest.mark.parametrize("out", EXAMPLES, ids=lambda p: p.name)
def test_a_committed_summary_reads_back_and_writes_the_same_bytes(out):
    text = (out / "summary.json").read_text()
    summary = read_summary(out / "summary.json")
    assert summary.to_json() == text
    assert summary.as_dict() == json.loads(text)


@pytest.mark.parametrize("out", EXAMPLES, ids=lambda p: p.name)
def test_a_report_renders_from_a_summary_read_back(out):
    assert render_report(read_summary(out / "summary.json")) == (out / "report.md").read_text()


def test_the_summary_types_are_frozen():
    summary = read_summary(EXAMPLES[0] / "summary.json")
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.rounds = 0  # type: ignore[misc]


def _corrupt(tmp_path: Path, change: typing.Callable[[dict], None]) -> Path:
    data = json.loads((EXAMPLES[0] / "summary.json").read_text())
    change(data)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["variants"][0].update(extra=1), r"variants\[0\]: unknown field\(s\) extra"),
        (lambda d: d["total"].pop("final_s"), r"\.total: missing field final_s"),
        (lambda d: d.update(schema_version=3), "summary schema_version 3, this lab reads 5"),
        (lambda d: d.update(steps={}), r"\.steps: expected a JSON list, found dict"),
    ],
)
def test_a_malformed_summary_is_a_one_line_error(tmp_path, change, message):
    path = _corrupt(tmp_path, change)
    with pytest.raises(LabError, match=message) as error:
        read_summary(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_the_summary_types_import_no_engine_and_no_torch():
    for path in RECORDS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("lab.engine", "torch", "numpy")), (path.name, name)
