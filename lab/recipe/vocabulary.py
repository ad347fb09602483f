"""The words plans and records are written in: what a variant is for, and the timing rules a
saving can be measured on. A report reads them back from old records, so changing one is a
schema change (docs/records.md), not a rename."""

from __future__ import annotations

# What a variant is for; records carry it so that a summary needs nothing but the records.
BASELINE, STEP, CONTROL, LEAVE_ONE_OUT = "baseline", "step", "control", "leave_one_out"
# The cumulative chain, whose neighbours a report compares: the baseline and each step after it.
CHAIN_ROLES = (BASELINE, STEP)

# The timing rules of the article's two chapters; the lab's timed region is TRAIN_EVAL. How
# each adds up a record's parts is `lab.analysis.summary.RULE_PARTS`; how a report names it,
# `lab.render`.
TRAIN_EVAL = "train_eval"  # training + per-epoch evaluation, preprocessing excluded
TRAIN_PREPROCESS = "train_preprocess"  # training + one-off preprocessing, evaluation excluded
# Chapter 2's sources (airbench): the whitening's eigendecomposition, training and the final
# (TTA) evaluation; loading the data and the per-epoch evaluations excluded.
WHITEN_TRAIN_FINAL_EVAL = "whiten_train_final_eval"

# CIFAR-10's classes: chance accuracy is 1 / this, which a summary's `learned` rule reads
# (lab.analysis.summary.learned), so old records are judged by the same chance.
CLASSES = 10

# The phases a timed run's region is split into (`measurements.phases_s`: phase -> seconds,
# also per epoch), in the order a report lists them. They sum to `total_s` exactly: `other`
# is the remainder, whatever no named phase covered. A report reads the names back from old
# records, so renaming one is a schema change (docs/records.md).
PHASES = {
    "train_startup": "the pass's start to its first batch: workers' start-up, up-front draws",
    "train_data_wait": "waiting for every later training batch",
    "h2d": "moving a training batch to the device, in its dtype and layout",
    "forward": "the training forward pass and the loss",
    "backward": "zeroing gradients and the backward pass",
    "optimizer": "the optimiser's step (loss scaling included)",
    "weight_average": "the weight average's update, when due",
    "train_edge": "the pass's end after its last step: the loss read back, workers shut down",
    "eval_startup": "from the evaluation's start to its first batch",
    "eval_data_wait": "waiting for every later test batch",
    "eval_h2d": "moving a test batch to the device",
    "eval_forward": "the evaluation's forward passes (test-time augmentation included) and count",
    "eval_edge": "the evaluation's end after its last batch: the count read back",
    "other": "the remainder of the timed region: per-step bookkeeping (rate, counters, loss sum)",
}
OTHER = "other"  # the remainder phase


def on_a(device: str) -> str:
    """ "a V100", "an A100", "an H200": the indefinite article a device's name takes read
    aloud (a letter name that starts with a vowel sound takes "an")."""
    return f"{'an' if device[:1] in 'AEFHILMNORSX8' else 'a'} {device}"
