"""Frozen dataclasses to and from JSON-shaped dicts, field by field in declaration order, so a
typed summary serialises to the same bytes the dict it replaces did (`json.dumps` keeps key
order). Fields marked `OMITTED_IF_NONE` are absent from the dict when None (a key the file
leaves out rather than nulls); a class may name more through `_omitted_fields`."""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union

from lab.errors import LabError

OMITTED_IF_NONE = {"omitted_if_none": True}

T = TypeVar("T")


def optional(**kwargs: Any) -> Any:
    """A field that defaults to None and is left out of the dict when None."""
    return dataclasses.field(default=None, metadata=OMITTED_IF_NONE, **kwargs)


def _omitted(obj: Any) -> set[str]:
    names = {
        f.name
        for f in dataclasses.fields(obj)
        if f.metadata.get("omitted_if_none") and getattr(obj, f.name) is None
    }
    extra = getattr(obj, "_omitted_fields", None)
    return names | (set(extra()) if extra else set())


def to_jsonable(value: Any) -> Any:
    """A dataclass (recursively, through lists and dicts) as plain dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        skip = _omitted(value)
        return {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in skip
        }
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_jsonable(cls: type[T], data: Any, where: str = "") -> T:
    """`data` (a dict read from JSON) as an instance of the dataclass `cls`; a missing or an
    unknown key is a one-line LabError naming where it is."""
    return _convert(cls, data, where or cls.__name__)


def _convert(kind: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any or kind is typing.Any:
        return data
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(inner, data, where)
    if origin is list:
        (inner,) = typing.get_args(kind)
        _expect(data, list, where)
        return [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        _, inner = typing.get_args(kind)
        _expect(data, dict, where)
        return {k: _convert(inner, v, f"{where}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(kind):
        _expect(data, dict, where)
        return _dataclass(kind, data, where)
    return data  # a number, a string, a bool or null: kept as read, so it writes back the same


def _expect(data: Any, kind: type, where: str) -> None:
    if not isinstance(data, kind):
        raise LabError(f"{where}: expected a JSON {kind.__name__}, found {type(data).__name__}")


def _dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise LabError(f"{where}: unknown field(s) {', '.join(unknown)}")
    hints = _hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING:
            raise LabError(f"{where}: missing field {name}")
    return cls(**values)
