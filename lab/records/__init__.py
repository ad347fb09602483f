"""The record format: what a job's output folder holds and how it is read, written, upgraded
and checked, with no torch and nothing of the training stack, so that the analysis, the report
and the comparison need only this layer and the recipe's vocabulary.

  outputs   the names of the files in an output folder.
  jsonl     results.jsonl, profile.jsonl, sessions.jsonl: append-only, versioned JSON lines,
            a torn last line dropped, older schemas upgraded on reading.
  plan      plan.json: `JobSpec` (the job, described once), writing, reading, upgrading.
  schema2   the frozen step and article facts a schema-2 plan never stored.
  floor     the floor's arithmetic and the vendors' peak table.

  summary   summary.json as typed parts (summary_step: a step's parts; typed: the
            conversion between dataclasses and JSON), written and read back.

It imports nothing from the lab but `lab.errors` and the recipe's frozen vocabulary (the
names a summary's fields are made of). What needs the device (the measured peak,
device names, the versions in a record's metadata) is the engine's (`lab.engine.peak`,
`lab.engine.metadata`).
"""
