"""`summary.json`: per-variant timings with medians and CIs, per-step savings, counter deltas.

Built from `results.jsonl` alone (warm-up runs excluded), so any report can be regenerated.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lab.registry import ARTICLE_TIMES_S, COUNTERS, all_steps
from lab.stats import median, median_ci, saving_ci, verdict

SUMMARY_SCHEMA_VERSION = 1
TIMINGS = ("total_s", "train_s", "eval_s", "preprocess_s")


def counter_values(record: dict[str, Any]) -> dict[str, float]:
    m = record["measurements"]
    return {
        "worker_launches": m["worker_launches"],
        "rng_calls": m["rng_calls"],
        "data_wait_s": m["data_wait_s"],
        "cpu_children_s": m["cpu_children_s"],
        "cpu_main_s": m["cpu_main_s"],
        "images_per_s": m["images_per_s"],
        "preprocess_s": m["preprocess_s"],
        "params": record["params"],
    }


def _interval(values: list[float]) -> dict[str, Any]:
    ci = median_ci(values)
    return {"median": median(values), "ci95": list(ci) if ci else None, "values": values}


def summarise_variant(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    first = records[0]
    target = first["config"]["target_accuracy"]
    accuracies = [r["measurements"]["final_test_accuracy"] for r in records]
    reached = sum(r["measurements"]["reached_target"] for r in records)
    counters = defaultdict(list)
    for record in records:
        for key, value in counter_values(record).items():
            counters[key].append(value)
    plan_match = all(
        r["measurements"]["worker_launches"] == r["expected"]["worker_launches"]
        and r["measurements"]["rng_calls"] == r["expected"]["rng_calls"]
        for r in records
    )
    return {
        "name": name,
        "steps": first["steps"],
        "runs": len(records),
        "timing": {key: _interval([r["measurements"][key] for r in records]) for key in TIMINGS},
        "accuracy": {
            "median": median(accuracies),
            "values": accuracies,
            "target": target,
            "reached": reached,
            "runs": len(records),
        },
        "counters": {key: median(values) for key, values in counters.items()},
        "expected_counters": first["expected"],
        "counters_match_plan": plan_match,
        "params": first["params"],
        "flops_per_image": first["flops_per_image"],
    }


def _expectation_holds(expected: str, before: float, after: float) -> bool:
    if expected == "down":
        return after < before
    if expected == "up":
        return after > before
    if expected == "zero":
        return after == 0
    return after == before  # "same": used for exact counters only


def summarise_step(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    name = after["steps"][-1]
    step = next((s for s in all_steps() if s.name == name), None)
    saved = saving_ci(before["timing"]["total_s"]["values"], after["timing"]["total_s"]["values"])
    deltas = {key: after["counters"][key] - before["counters"][key] for key in COUNTERS}
    checks = []
    for counter, expected in step.expects.items() if step else []:
        holds = _expectation_holds(
            expected, before["counters"][counter], after["counters"][counter]
        )
        checks.append(
            {
                "counter": counter,
                "expected": expected,
                "before": before["counters"][counter],
                "after": after["counters"][counter],
                "holds": holds,
            }
        )
    return {
        "name": name,
        "title": step.title if step else name,
        "variant": after["name"],
        "saved_s": {
            "median": before["timing"]["total_s"]["median"] - after["timing"]["total_s"]["median"],
            "ci95": list(saved) if saved else None,
            "verdict": verdict(saved),
        },
        "one_off_s": after["timing"]["preprocess_s"]["median"]
        - before["timing"]["preprocess_s"]["median"],
        "counter_deltas": deltas,
        "expectations": checks,
        "flagged": any(not check["holds"] for check in checks) or not after["counters_match_plan"],
        "accuracy_change": after["accuracy"]["median"] - before["accuracy"]["median"],
        "article": {
            "step": step.article_step if step else None,
            "saved_s": step.article_saved_s if step else None,
            "shared_with": step.article_shared_with if step else [],
        },
    }


CATEGORIES = ("data", "compute", "other")


def profile_summary(profile: dict[str, Any]) -> dict[str, Any]:
    """Where a variant's step time goes, and what the profiler itself cost."""
    breakdown = profile["breakdown"]
    return {
        "tb_run": profile["tb_run"],
        "trace": profile["trace"],
        "train_steps": breakdown["train_steps"],
        "seconds": {
            "step": breakdown["step_s"],
            **{c: breakdown[f"{c}_s"] for c in CATEGORIES},
            "h2d": breakdown["h2d_s"],
            "eval": breakdown["eval_s"],
            "preprocess": breakdown["preprocess_s"],
        },
        "shares": breakdown["shares"],
        "profiled_steps_s": profile["profiled_steps_s"],
        "unprofiled_steps_s": profile["unprofiled_steps_s"],
        "profiler_overhead": profile["profiler_overhead"],
    }


def floor_summary(records: list[dict[str, Any]], measured_total_s: float) -> dict[str, Any]:
    """The article's minimum-time calculation for this variant on this device."""
    first = records[0]
    peak = first["peak"]
    floor_s = first["total_flops"] / (peak["used_tflops"] * 1e12)
    return {
        "flops_per_image": first["flops_per_image"],
        "total_flops": first["total_flops"],
        "peak_tflops": peak["used_tflops"],
        "peak_source": peak["source"],
        "measured_peak_tflops": peak["measured_tflops"],
        "vendor_peak_tflops": peak["vendor_tflops"],
        "peak_dtype": peak["dtype"],
        "floor_s": floor_s,
        "efficiency": floor_s / measured_total_s if measured_total_s else None,
    }


def where_saving_came_from(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """Per category, how the profiled epoch's seconds moved; the biggest decrease names it."""
    if "profile" not in before or "profile" not in after:
        return None
    deltas = {
        c: after["profile"]["seconds"][c] - before["profile"]["seconds"][c] for c in CATEGORIES
    }
    share_moves = {
        c: [before["profile"]["shares"][c], after["profile"]["shares"][c]] for c in CATEGORIES
    }
    biggest = min(deltas, key=deltas.get)
    return {
        "seconds_change": deltas,
        "shares": share_moves,
        "came_from": biggest if deltas[biggest] < 0 else "none (no category got faster)",
    }


def build_summary(
    records: list[dict[str, Any]], profiles: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    timed = [r for r in records if not r["warmup"]]
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in timed:
        by_variant[record["variant"]].append(record)
    # Variants in cumulative order: fewest steps first.
    names = sorted(by_variant, key=lambda n: len(by_variant[n][0]["steps"]))
    variants = [summarise_variant(name, by_variant[name]) for name in names]
    profile_by_variant = {p["variant"]: p for p in profiles or []}
    for variant in variants:
        runs = by_variant[variant["name"]]
        variant["floor"] = floor_summary(runs, variant["timing"]["total_s"]["median"])
        if variant["name"] in profile_by_variant:
            variant["profile"] = profile_summary(profile_by_variant[variant["name"]])
    steps = [summarise_step(a, b) for a, b in zip(variants, variants[1:], strict=False)]
    for step, (before, after) in zip(steps, zip(variants, variants[1:], strict=False), strict=True):
        step["where"] = where_saving_came_from(before, after)
    baseline = variants[0]["timing"]["total_s"]["median"] if variants else None
    final = variants[-1]["timing"]["total_s"]["median"] if variants else None
    meta_keys = (
        "preset",
        "device_name",
        "cpu_model",
        "cpu_cores",
        "torch_version",
        "python_version",
        "lab_version",
        "git_revision",
        "code_hash",
        "date",
        "command",
    )
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "meta": {key: timed[0].get(key) for key in meta_keys} if timed else {},
        "first_run_date": min((r["date"] for r in timed), default=None),
        "last_run_date": max((r["date"] for r in timed), default=None),
        "warmup_runs": len(records) - len(timed),
        "variants": variants,
        "steps": steps,
        "total": {
            "baseline_s": baseline,
            "final_s": final,
            "saved_s": (baseline - final) if variants else None,
            "sum_of_step_savings_s": sum(s["saved_s"]["median"] for s in steps),
            "one_off_preprocessing_s": variants[-1]["timing"]["preprocess_s"]["median"]
            if variants
            else None,
        },
        "article_times_s": {str(k): v for k, v in ARTICLE_TIMES_S.items()},
        "profiled": bool(profile_by_variant),
    }
