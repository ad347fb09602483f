"""The words plans and records are written in: what a variant is for, and the timing rules a
saving can be measured on. A report reads them back from old records, so changing one is a
schema change (docs/records.md), not a rename."""

from __future__ import annotations

# What a variant is for; records carry it so that a summary needs nothing but the records.
BASELINE, STEP, CONTROL, LEAVE_ONE_OUT = "baseline", "step", "control", "leave_one_out"
# The cumulative chain, whose neighbours a report compares: the baseline and each step after it.
CHAIN_ROLES = (BASELINE, STEP)

# The two timing rules of the article; the lab's timed region is TRAIN_EVAL. How each adds up
# a record's parts is `lab.analysis.summary.RULE_PARTS`; how a report names it, `lab.render`.
TRAIN_EVAL = "train_eval"  # training + per-epoch evaluation, preprocessing excluded
TRAIN_PREPROCESS = "train_preprocess"  # training + one-off preprocessing, evaluation excluded

# CIFAR-10's classes: chance accuracy is 1 / this, which a summary's `learned` rule reads
# (lab.analysis.summary.learned), so old records are judged by the same chance.
CLASSES = 10
