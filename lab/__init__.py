"""lab: a profiling and ablation lab for training speed (first subject: ResNet on CIFAR-10).

The layers, bottom to top (tests/test_layers.py enforces them):
  recipe/     what a run is: config, schedules, presets, the step registry, variants, the article's
              figures, the counter table, workload arithmetic. No torch.
  records/    the record format, beside recipe: output file names, results/profile/sessions
              JSON lines, plan.json and the job's description (JobSpec), schema upgrades,
              the floor's arithmetic. No torch; imports nothing of the lab.
  ../ablations/  the steps, one module each, just above recipe: the registry imports none of
              them; `import ablations` (the CLIs, the job, the tests) registers them all.
  train/      running one: data, pipelines, network, trainer. torch.
  profiling/  profiled passes, trace reading, CPU load. torch.
  engine/     jobs of rounds: the job, the rounds and runs both engines share, the local
              engine (runner) and the Ray one (ray_rounds, cluster), the session, the plan's
              counts, each record's metadata, the measured peak.
  analysis/   statistics and summaries, from records alone (recipe's vocabulary, records).
              No torch.
  render/     report text, charts, TensorBoard logs, from a summary. No torch.
  ablate, report, compare, tensorboard: the command-line programs on top; doctables writes
  the docs' generated tables from the recipe.
"""

from pathlib import Path

__version__ = "0.1.0"

# The checkout's root: where `reports/`, `ablations/` and the sibling `shared/` data are found.
REPO_ROOT = Path(__file__).resolve().parent.parent
