"""`python -m lab.ablate`: train the baseline and the cumulative speedup variants in randomized
rounds, append one record per run to `<out>/results.jsonl`, and write the report.

Examples:
  python -m lab.ablate                      # the baseline on the default preset
  python -m lab.ablate --all                # baseline + Part 1's steps + a control
  python -m lab.ablate --series full        # the whole series, Parts 1-8 (--help counts them)
  python -m lab.ablate --all --leave-one-out
  python -m lab.ablate --steps bn_dedupe,bulk_rng --rounds 12
  python -m lab.ablate --all --target-mde 6 --budget 40m   # rounds until 6% is resolvable
  python -m lab.ablate --plan --json --all --preset dawnbench
  python -m lab.ablate --resume reports/20261124-120000-cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import ablations  # noqa: F401  (registers the steps: the registry imports none)
from lab.analysis.adaptive import (
    DEFAULT_MAX_ROUNDS,
    DEFAULT_MIN_ROUNDS,
    check_target_mde,
    parse_duration,
)
from lab.analysis.rounds import adaptive_rule, next_round, wanted_rounds
from lab.engine.cluster import Cluster, check_fits, connect, default_round_cpus
from lab.engine.job import Job
from lab.engine.provenance import code_hash
from lab.engine.rounds import NextRound, RoundPlan
from lab.errors import LabError
from lab.recipe.config import field_names
from lab.recipe.presets import PRESETS, default_preset, get_preset
from lab.recipe.registry import (
    SERIES,
    all_steps,
    describe_series,
    get_steps,
    series_start,
    series_steps,
)
from lab.recipe.vocabulary import on_a
from lab.recipe.workload import steps_per_pass, subset_sizes
from lab.records import outputs
from lab.records.plan import DataSource
from lab.render.words import decision_line, disturbed_line

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.ablate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Documentation: README.md and docs/ (presets, statistics, data, records).",
    )
    jobs = parser.add_argument_group("what to run")
    jobs.add_argument(
        "--all",
        action="store_true",
        help=f"run the baseline and the seed article's {len(series_steps('part1'))} steps "
        "cumulatively (= --series part1)",
    )
    jobs.add_argument(
        "--series",
        choices=sorted(SERIES),
        help="run the baseline and a named series of steps cumulatively: "
        + "; ".join(f"{name}: {describe_series(name)}" for name in SERIES),
    )
    jobs.add_argument(
        "--steps", metavar="A,B", help="run the baseline and these steps cumulatively, in order"
    )
    jobs.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        help="with --all, --series or --steps: start the chain at STEP; the baseline (and the "
        "control) is the recipe just before it, every earlier step applied (docs/series.md)",
    )
    jobs.add_argument(
        "--leave-one-out",
        action="store_true",
        default=None,
        help="also run, for each step, every step but that one (order-independent savings "
        "and interactions)",
    )
    jobs.add_argument(
        "--list", action="store_true", help="list the registered steps with the article's claims"
    )
    jobs.add_argument(
        "--plan",
        action="store_true",
        help="train nothing; print each variant's config, size and expected counters",
    )
    jobs.add_argument("--json", action="store_true", help="with --plan or --list: print JSON")
    jobs.add_argument(
        "--resume",
        metavar="OUT",
        help="finish an interrupted job in OUT on its own data, running only the missing runs",
    )
    setup = parser.add_argument_group("how to run it")
    setup.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="scale of the job (default: dawnbench with a GPU; without one, cpu, or "
        "cpu-series for --series full, cpu-airbench for --series airbench or both)",
    )
    setup.add_argument(
        "--data",
        metavar="PATH",
        help="CIFAR-10 image-folder tree or cifar-10-batches-py folder (default: $LAB_DATA, "
        "../shared/data/cifar10-jpeg, ~/.cache/lab/cifar-10-batches-py, else the official "
        "archive is downloaded)",
    )
    setup.add_argument(
        "--download",
        action="store_true",
        help="fetch the official python-version archive into the cache ($LAB_CACHE or "
        "~/.cache/lab), verify its MD5, and use it",
    )
    setup.add_argument("--download-url", metavar="URL", help=argparse.SUPPRESS)
    setup.add_argument(
        "--out", metavar="DIR", help="output folder (default: a new reports/<date>-<preset>/)"
    )
    setup.add_argument(
        "--rounds",
        "--runs",
        type=int,
        metavar="N",
        dest="rounds",
        help="rounds; each runs every variant once, in a shuffled order (default: the "
        "preset's; --runs is an alias)",
    )
    setup.add_argument(
        "--target-mde",
        type=float,
        metavar="PCT",
        help="adaptive rounds: add rounds until the job's minimum detectable saving is at most "
        "PCT percent (after --min-rounds clean rounds), or --budget or --max-rounds ends it; "
        "not with --rounds (docs/statistics.md)",
    )
    setup.add_argument(
        "--budget",
        metavar="DURATION",
        help="adaptive rounds: stop before the next round would exceed DURATION (90s, 30m, 2h, "
        "1h30m) of timed runs; alone, spend it on as many rounds as fit",
    )
    setup.add_argument(
        "--min-rounds",
        type=int,
        metavar="N",
        help=f"with --target-mde/--budget: clean rounds before the target may stop the job "
        f"(default {DEFAULT_MIN_ROUNDS})",
    )
    setup.add_argument(
        "--max-rounds",
        type=int,
        metavar="N",
        help=f"with --target-mde/--budget: rounds run at most, disturbed ones included "
        f"(default {DEFAULT_MAX_ROUNDS})",
    )
    setup.add_argument(
        "--seed", type=int, metavar="N", help="training seed of round 0; round i uses seed+i"
    )
    setup.add_argument(
        "--order-seed",
        type=int,
        metavar="N",
        help="seed of the per-round shuffles (default: a fresh one, recorded in the job)",
    )
    setup.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="device to train on (default: auto, CUDA when present)",
    )
    setup.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config field, typed (repeatable); keys: " + ", ".join(field_names()),
    )
    setup.add_argument(
        "--no-warmup",
        action="store_true",
        default=None,
        help="skip the discarded warm-up run (on by default with several variants)",
    )
    setup.add_argument(
        "--no-control",
        action="store_true",
        default=None,
        help="skip the control (a second baseline in every round that measures the noise floor)",
    )
    setup.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = parser.add_argument_group("rounds on Ray (pip install 'lab[ray]'; docs/scale-out.md)")
    scale.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run each round as a Ray task on one worker and one device, several rounds at "
        "once: without ADDRESS a local Ray (or $RAY_ADDRESS), 'auto' or HOST:PORT joins a "
        "running cluster",
    )
    scale.add_argument(
        "--round-cpus",
        type=int,
        metavar="N",
        help="with --ray: cores reserved (and pinned) per round (default: a node's cores per "
        "GPU; without GPUs a whole host, one round at a time per host)",
    )
    profiling = parser.add_argument_group("profiling and the floor")
    profiling.add_argument(
        "--no-profile",
        action="store_true",
        default=None,
        help="skip the profiled pass per variant (TensorBoard traces under <out>/tb/ and the "
        "where-the-time-goes table)",
    )
    profiling.add_argument(
        "--profile-passes",
        type=int,
        metavar="N",
        help="profiled passes per cumulative variant (default 1), interleaved like the rounds; "
        "with 2 or more the breakdown shows medians and spread, and a category or an "
        "operator's time change is named as a cause only outside that spread",
    )
    profiling.add_argument(
        "--with-stack",
        action="store_true",
        default=None,
        help="record Python stacks in the traces (bigger, slower to load)",
    )
    profiling.add_argument(
        "--peak-tflops",
        type=float,
        metavar="T",
        help="the device's peak TFLOP/s for the floor, instead of the measured matmul peak "
        "and the vendor figure",
    )
    return parser


# ----------------------------------------------------------------------------- the job


def _device(requested: str | None, cluster: Cluster | None = None) -> str:
    """The job's device: this machine's, or with --ray the cluster's (its GPUs)."""
    if cluster is not None:
        has_cuda = cluster.has_gpus
    else:
        import torch  # here: --help, --list and --plan start without torch

        has_cuda = torch.cuda.is_available()
    if requested in (None, "auto"):
        return "cuda" if has_cuda else "cpu"
    if requested == "cuda" and not has_cuda:
        where = "in the Ray cluster" if cluster else "here"
        raise LabError(f"--device cuda: no CUDA device is available {where}")
    return requested


def _chain(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """(start, steps): the steps applied before the chain (`--from`) and the chain's own."""
    names = _steps(args)
    # A series that runs on top of another's final recipe (chapter 2) starts after its steps.
    before = tuple(s.name for s in series_start(args.series)) if args.series else ()
    if args.from_step is None:
        return before or None, names
    if names is None:
        raise LabError(f"--from {args.from_step}: only with --all, --series or --steps")
    if args.from_step not in names:
        raise LabError(
            f"--from {args.from_step}: not a step of this chain; valid: {', '.join(names)}"
        )
    cut = names.index(args.from_step)
    return before + names[:cut], names[cut:]


def _steps(args: argparse.Namespace) -> tuple[str, ...] | None:
    given = [
        flag
        for flag, value in (("--all", args.all), ("--series", args.series), ("--steps", args.steps))
        if value
    ]
    if len(given) > 1:
        raise LabError(f"{' and '.join(given)}: give one of them")
    if args.all:
        return tuple(s.name for s in series_steps("part1"))
    if args.series:
        return tuple(s.name for s in series_steps(args.series))
    if args.steps:
        names = [n.strip() for n in args.steps.split(",") if n.strip()]
        return tuple(s.name for s in get_steps(names))
    return None


def _check_ray_flags(args: argparse.Namespace) -> None:
    if args.round_cpus is not None and args.ray is None:
        raise LabError("--round-cpus: only with --ray")
    if args.round_cpus is not None and args.round_cpus < 1:
        raise LabError(f"--round-cpus {args.round_cpus}: must be >= 1")


def _adaptive_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The adaptive rule's fields the flags give (checked one by one here, as a whole by
    `AdaptiveRule` when the job is made)."""
    adaptive = args.target_mde is not None or args.budget is not None
    if adaptive and args.rounds is not None:
        raise LabError(
            f"--rounds {args.rounds}: fixed rounds; an adaptive job (--target-mde, --budget) "
            "runs from --min-rounds to --max-rounds"
        )
    for flag, value in (("--min-rounds", args.min_rounds), ("--max-rounds", args.max_rounds)):
        if value is not None and not adaptive and not args.resume:
            raise LabError(f"{flag} {value}: only with --target-mde or --budget")
    return {
        "target_mde_pct": None if args.target_mde is None else check_target_mde(args.target_mde),
        "budget_s": None if args.budget is None else parse_duration(args.budget),
        "min_rounds": args.min_rounds,
        "max_rounds": args.max_rounds,
    }


def requested_fields(args: argparse.Namespace, cluster: Cluster | None = None) -> dict[str, Any]:
    """The job fields the flags set explicitly (a flag not given is absent)."""
    _check_ray_flags(args)
    start, steps = _chain(args)
    fields: dict[str, Any] = {
        "preset": args.preset,
        "start": start,
        "steps": steps,
        "rounds": args.rounds,
        "seed": args.seed,
        "order_seed": args.order_seed,
        "device": _device(args.device, cluster) if args.device else None,
        "overrides": tuple(args.overrides) if args.overrides else None,
        "warmup": False if args.no_warmup else None,
        "control": False if args.no_control else None,
        "leave_one_out": args.leave_one_out,
        "profile": False if args.no_profile else None,
        "with_stack": args.with_stack,
        "profile_passes": args.profile_passes,
        "peak_tflops": args.peak_tflops,
        "ray": True if args.ray is not None else None,
        "round_cpus": args.round_cpus,
        **_adaptive_fields(args),
    }
    if args.rounds is not None and args.rounds < 1:
        raise LabError(f"--rounds {args.rounds}: must be >= 1")
    if args.profile_passes is not None and args.profile_passes < 1:
        raise LabError(f"--profile-passes {args.profile_passes}: must be >= 1")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise LabError(f"--peak-tflops {args.peak_tflops:g}: must be > 0")
    return {name: value for name, value in fields.items() if value is not None}


def new_job(
    args: argparse.Namespace, data: DataSource | None, cluster: Cluster | None = None
) -> Job:
    """A job from the flags; the fields no flag set take the preset's values or `Job`'s
    defaults; `cluster` with --ray."""
    given = requested_fields(args, cluster)
    device = given.get("device") or _device(None, cluster)
    preset = given.get("preset") or default_preset(device, args.series)
    without_default = {
        "preset": preset,
        "steps": given.get("steps", ()),
        "rounds": given.get("rounds", get_preset(preset).rounds),
        "seed": given.get("seed", 0),
        "order_seed": given.get("order_seed", secrets.randbelow(2**31)),
        "device": device,
        "ray": cluster is not None,
        "round_cpus": given.get("round_cpus") or (cluster and default_round_cpus(cluster, device)),
    }
    if "target_mde_pct" in given or "budget_s" in given:
        without_default.update(_adaptive_defaults(given))
    job = Job(**{**given, **without_default}, data=data)
    rule = adaptive_rule(job)  # a rule that cannot stop a job fails here
    if rule is not None and rule.target_mde_pct is not None and len(job.variants()) < 2:
        raise LabError(
            "--target-mde: a job of the baseline alone compares nothing; give steps "
            "(--all, --series, --steps)"
        )
    job.base_config()  # unknown keys and bad values in --set fail here, before any work
    for variant in job.variants():  # a step's config that cannot train fails here too
        steps_per_pass(variant.config, subset_sizes(variant.config)[0])
    return job


def _adaptive_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """An adaptive job's rounds bounds, and its planned `rounds` (what `--plan` and the records'
    `job_rounds` state): its minimum."""
    min_rounds = given.get("min_rounds", DEFAULT_MIN_ROUNDS)
    return {
        "min_rounds": min_rounds,
        "max_rounds": given.get("max_rounds", max(DEFAULT_MAX_ROUNDS, min_rounds)),
        "rounds": min_rounds,
    }


def resumed_job(args: argparse.Namespace, out: Path, cluster: Cluster | None = None) -> Job:
    """The stored job; any flag that would change it is refused, naming the conflict (a Ray
    job's address is not part of it: `--ray ADDRESS` may name where to finish it)."""
    job = Job.load(out, code_hash())
    conflicts = job.conflicts(requested_fields(args, cluster))
    if args.data is not None or args.download:
        from lab.train.data import find_or_fetch_data, source_key  # torch: not for --help

        path, _ = source_key(find_or_fetch_data(args.data, args.download))
        if job.data is None or path != job.data.path:
            conflicts.append(f"data {path} (the job has {job.data.path if job.data else None})")
    if conflicts:
        raise LabError(
            f"--resume {out}: flags would change the job: {'; '.join(conflicts)}; "
            "drop them, or start a new job"
        )
    return job


def _check_driver_can_profile(job: Job) -> None:
    """Profiled passes run on the driver after the rounds: it needs the job's device."""
    import torch  # here: --help, --list and --plan start without torch

    if job.profile and job.device == "cuda" and not torch.cuda.is_available():
        raise LabError(
            "--ray: the profiled passes run on this machine, which has no CUDA device; "
            "run the driver on a GPU node or add --no-profile"
        )


def data_source(args: argparse.Namespace) -> DataSource:
    from lab.train.data import OFFICIAL_URL, find_or_fetch_data, source_key  # torch

    path = find_or_fetch_data(
        args.data,
        args.download,
        url=args.download_url or OFFICIAL_URL,
        say=lambda line: print(line, file=sys.stderr),
    )
    return DataSource(*source_key(path))


# ----------------------------------------------------------------------------- printing


def print_list(as_json: bool) -> None:
    steps = all_steps()
    if as_json:
        rows = [
            {
                "name": s.name,
                "order": s.order,
                "title": s.title,
                "changes": s.changes,
                "part": s.part,
                "chapter": s.article.chapter if s.article else None,
                "where": s.article.where if s.article else None,
                "article_device": s.article.device if s.article else None,
                "article_step": s.article_step,
                "article_time_s": s.article.time_s if s.article else None,
                "article_saved_s": s.article_saved_s,
                "article_accuracy": s.article.accuracy if s.article else None,
                "article_rule": s.article.rule if s.article else None,
                "article_shared_with": s.article_shared_with,
                "expects": s.expects,
                "needs_precision": s.needs_precision,
                "needs_device": s.needs_device,
            }
            for s in steps
        ]
        print(json.dumps(rows, indent=2))
        return
    for s in steps:
        print(f"{s.order:2d}. {s.name:22s} {s.title}\n    {'':22s} {s.changes}")
        if s.article is None:
            print(f"    {'':22s} no claim in the article")
            continue
        claim = (
            f"{s.article.where}: -{s.article_saved_s:g} s -> {s.article.time_s:g} s "
            f"on {on_a(s.article.device)}"
        )
        if s.article.pflops is not None:
            claim += f" ({s.article.pflops:g} PFLOPs, {s.article.epochs:g} epochs)"
        if s.article.accuracy:
            claim += f", {s.article.accuracy}"
        if s.article_shared_with:
            claim += f" (shared with {', '.join(s.article_shared_with)})"
        print(f"    {'':22s} {claim}")


def print_plan(job: Job, as_json: bool) -> None:
    from lab.engine.plan import plan_entry  # counting parameters and FLOPs needs torch

    entries = [{**plan_entry(v, job.peak_tflops), "role": v.role} for v in job.variants()]
    if as_json:
        job_fields = {k: v for k, v in job.to_dict().items() if k not in ("data", "order_seed")}
        print(
            json.dumps(
                {**job_fields, "runs_per_round": len(entries), "variants": entries}, indent=2
            )
        )
        return
    rounds = f"{job.rounds} round(s)"
    if job.adaptive:
        rounds = f"adaptive rounds ({job.min_rounds} to {job.max_rounds})"
    print(
        f"preset {job.preset}, {rounds} of {len(entries)} variant(s) on "
        f"{job.device}, order shuffled per round"
    )
    if job.start:
        print(
            f"  starting after {job.start[-1]} (--from {job.steps[0]}): the baseline has "
            f"{len(job.start)} step(s) applied"
        )
    scales = {e["config"].get("lr_scale", 1.0) for e in entries}
    if scales != {1.0}:  # a concession every variant shares: said once, above them
        print(f"  every rate x {', '.join(f'{scale:g}' for scale in sorted(scales))} (lr_scale)")
    for e in entries:
        c = e["config"]
        print(
            f"  {e['name']:22s} {c['architecture']} width {c['width']}, {e['train_images']} "
            f"images x {c['epochs']:.4g} epochs at batch {c['batch_size']} "
            f"({e['train_steps']:,} steps), {e['params']:,} params, "
            f"{e['flops_per_image']:.3g} FLOPs/image, "
            f"{e['expected_worker_launches']:,} worker launches, "
            f"{e['expected_rng_calls']:,} RNG calls"
        )
        if e["steps"]:
            _print_source_figures(e)


def _print_source_figures(entry: dict) -> None:
    """Below a chapter-2 variant: its source's figures, and this plan's FLOPs per run on the
    source's rule (beside the source's PFLOPs, as a ratio, when the run is at its scale)."""
    claim = get_steps([entry["steps"][-1]])[0].article
    if claim is None or claim.pflops is None:
        return
    ours = entry["source_rule_flops"] / 1e15
    at_scale = entry["train_images"] == 50_000 and entry["test_images"] == 10_000
    ratio = f" ({100 * (ours / claim.pflops - 1):+.1f}% of the source's)" if at_scale else ""
    print(
        f"  {'':22s} {claim.where}: {claim.time_s:g} s, {claim.pflops:g} PFLOPs, "
        f"{claim.epochs:g} epochs on {on_a(claim.device)}; this plan {ours:.3g} PFLOPs on "
        f"its rule{ratio}"
    )


def rounds_rule(job: Job) -> NextRound:
    """The job's rounds rule (`lab.analysis.rounds.next_round`) as the engine asks it, with
    the lines it prints: every adaptive decision, and each newly disturbed round."""
    reported: set[int] = set()

    def rule(records: list[dict[str, Any]]) -> RoundPlan:
        call = next_round(job, records)
        lines = []
        new = [d for d in call.state.disturbed if d.round not in reported]
        if new:
            lines.append(disturbed_line(new))
            reported.update(d.round for d in new)
        if call.decision is not None and call.state.rounds_run:
            lines.append(decision_line(call, job.target_mde_pct))
        return RoundPlan(call.stop, wanted_rounds(job, call), tuple(lines), call.to_dict())

    return rule


def default_out(preset: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return REPO_ROOT / "reports" / f"{stamp}-{preset}"


def prepare_out(args: argparse.Namespace, job: Job) -> Path:
    """Create the output folder with plan.json; refuse to mix into an existing job."""
    out = Path(args.out) if args.out else default_out(job.preset)
    if (out / outputs.RESULTS).exists() or (out / outputs.PLAN).exists():
        raise LabError(f"--out {out}: already holds a job; use --resume {out} or a new folder")
    out.mkdir(parents=True, exist_ok=True)
    job.save(out, code_hash())
    return out


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    try:
        return _main(args, started)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(
            "\ninterrupted: every finished run is in results.jsonl; "
            "finish with: python -m lab.ablate --resume <out>",
            file=sys.stderr,
        )
        return 130


def _main(args: argparse.Namespace, started: float) -> int:
    if args.list:
        print_list(args.json)
        return 0
    if args.plan:
        job = resumed_job(args, Path(args.resume)) if args.resume else new_job(args, None)
        print_plan(job, args.json)
        return 0
    _check_ray_flags(args)  # before starting Ray, which takes seconds
    if args.resume:
        out = Path(args.resume)
        # Refused flags are refused before Ray starts; `--device` needs the cluster's GPUs.
        early = connect(args.ray) if args.device and args.ray is not None else None
        job = resumed_job(args, out, early)
    else:
        cluster = connect(args.ray) if args.ray is not None else None
        job = new_job(args, None, cluster)  # bad flags: nothing fetched or written yet
    if job.ray:
        check_fits(job, connect(args.ray or ""))
        _check_driver_can_profile(job)
    if not args.resume:
        # The data last: a flag the cluster refuses is named before any data is looked for or
        # downloaded. Bad data: still nothing written.
        job = dataclasses.replace(job, data=data_source(args))
    # The engine trains (torch): imported once the job is known, so that bad flags, --help,
    # --list and --plan are answered without loading it.
    from lab.engine.runs import load_job_data
    from lab.engine.session import run

    progress = not args.no_progress and sys.stderr.isatty()
    data = load_job_data(job, progress)
    if not args.resume:
        out = prepare_out(args, job)
    how = (
        f"decoded cache, loaded in {data.load_s:.2f} s"
        if data.cache_hit
        else f"decoded once in {data.decode_s:.1f} s, cached for next time; not part of any timing"
    )
    print(f"data: {data.source} ({how})", file=sys.stderr)
    ran = run(job, out, data, progress, started, rounds_rule(job))
    from lab.render.report import write_report  # matplotlib: only once there is a report

    write_report(out)
    print(f"{ran} run(s) done; results, summary and report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
