"""The mechanism counters: what each measures, where a record keeps it, how a report prints it.

Steps promise moves of these counters (`expects` in `ablations/`); the summary computes their
medians and deltas, the report prints them. This table is their one definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counter:
    name: str
    label: str  # how a report names it
    delta_format: str  # how a report prints a change of it
    exact: bool  # counted, not timed: any change is real; timed ones need > 2% to be shown
    read: Callable[[dict[str, Any]], float | None]  # the value in a run record (None: not
    # measured, see `lab.records.jsonl.upgrade_record`)


def _measured(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda record: record["measurements"][key]


def _measured_since_chapter2(key: str) -> Callable[[dict[str, Any]], float | None]:
    """A counter that records from before chapter 2 lack: not measured (None) there."""
    return lambda record: record["measurements"].get(key)


COUNTERS: dict[str, Counter] = {
    counter.name: counter
    for counter in (
        Counter(
            "worker_launches", "worker launches", "{:+,.0f}", True, _measured("worker_launches")
        ),
        Counter("rng_calls", "RNG calls", "{:+,.0f}", True, _measured("rng_calls")),
        Counter("data_wait_s", "data wait", "{:+.2f} s", False, _measured("data_wait_s")),
        Counter("cpu_children_s", "child CPU", "{:+.2f} s", False, _measured("cpu_children_s")),
        Counter("cpu_main_s", "main CPU", "{:+.2f} s", False, _measured("cpu_main_s")),
        Counter("images_per_s", "images/s", "{:+.0f}", False, _measured("images_per_s")),
        Counter(
            "preprocess_s", "one-off preprocessing", "{:+.2f} s", False, _measured("preprocess_s")
        ),
        Counter("params", "params", "{:+,.0f}", True, lambda record: record["params"]),
        Counter("train_steps", "optimiser steps", "{:+,.0f}", True, _measured("train_steps")),
        Counter("epochs", "epochs", "{:+.3g}", True, lambda record: record["config"]["epochs"]),
        Counter(
            "flops_per_image",
            "FLOPs/image",
            "{:+.3g}",
            True,
            lambda record: record["flops_per_image"],
        ),
        Counter(
            "weight_average_updates",
            "weight-average updates",
            "{:+,.0f}",
            True,
            _measured_since_chapter2("weight_average_updates"),
        ),
        Counter(
            "eval_views",
            "evaluation views",
            "{:+,.0f}",
            True,
            _measured_since_chapter2("eval_views"),
        ),
        Counter("compile_s", "compile", "{:+.2f} s", False, _measured_since_chapter2("compile_s")),
    )
}
# A change of a timed counter smaller than this fraction is not shown as a change.
SHOWN_CHANGE = 0.02


def counter_values(record: dict[str, Any]) -> dict[str, float]:
    """The counters a record measured (null: not measured by the lab that wrote it)."""
    values = {name: counter.read(record) for name, counter in COUNTERS.items()}
    return {name: value for name, value in values.items() if value is not None}
