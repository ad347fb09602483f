"""The words a report puts on a summary's data: timing rules, where a saving came from, why a
step is expected to change nothing, how a step's interaction reads. The summary stores codes
and numbers; these phrases are written here, once, for the report and the charts."""

from __future__ import annotations

from typing import Any

from lab.recipe.vocabulary import TRAIN_EVAL, TRAIN_PREPROCESS

RULE_NAMES = {
    TRAIN_EVAL: "training + evaluation (preprocessing excluded)",
    TRAIN_PREPROCESS: "training + preprocessing (evaluation excluded)",
}
RULE_SHORT = {TRAIN_EVAL: "train + eval", TRAIN_PREPROCESS: "train + preprocess"}


def came_from(where: dict[str, Any]) -> str:
    """'compute', or why no category was named: 'unclear (one profiled pass)'."""
    if where["reason"] == "one_pass":
        return f"{where['came_from']} (one profiled pass)"
    if where["reason"] == "within_spread":
        passes = where["attribution"]["passes"]
        return f"{where['came_from']} (within the spread of {passes} profiled passes)"
    return where["came_from"]


def no_effect(step: dict[str, Any]) -> str:
    """Why a step is expected to change no work on this device."""
    expected = step["no_effect_expected"]
    return (
        f"no effect expected on this device: it changes only {expected['needs_precision']} "
        f"models, and this one trained in {expected['precision']}"
    )


def interaction_reading(step: dict[str, Any]) -> str:
    """A step's saving in the cumulative order against its saving when added last."""
    name, interaction = step["name"], step["interaction"]
    cumulative = step["saved_pct"]["estimate"]
    last = step["leave_one_out"]["saved_pct"]["estimate"]
    if interaction["is_last_step"]:
        return f"{name} is the last step: added last is its cumulative saving, {cumulative:.1f}%"
    reading = (
        f"{name} saves {cumulative:.1f}% right after {interaction['cumulative_after']} but "
        f"{last:.1f}% when added last, to every other step"
    )
    if interaction["same_config"]:
        reading += (
            f"; with every other step in, {name} changes nothing (the two variants run the "
            "same configuration: a later step overrides it)"
        )
    return reading
