"""The article's figures, kept in one place: David Page, "How to train your ResNet", Part 1
(SPEC.md). The registry, the summary, the report and the waterfall all read them from here."""

from __future__ import annotations

# Time of the whole 35-epoch run on one V100 after each of the article's steps (step 0: the
# reproduced DAWNBench baseline).
TIMES_S: dict[int, float] = {0: 356.0, 1: 323.0, 2: 308.0, 3: 301.0, 4: 297.0}

# Short names of the article's steps, for charts.
STEP_LABELS: dict[int, str] = {
    1: "BN dedupe\n+ smooth LR",
    2: "preprocess\n+ 1 worker",
    3: "bulk RNG",
    4: "main-thread\naug",
}

DEVICE = "V100"


def baseline_s() -> float:
    return TIMES_S[0]


def final_s() -> float:
    return TIMES_S[max(TIMES_S)]


def step_saved_s(step: int) -> float:
    """Seconds the article's step `step` saved (shared by the lab's steps with that number)."""
    return TIMES_S[step - 1] - TIMES_S[step]


def total_saved_s() -> float:
    return baseline_s() - final_s()
