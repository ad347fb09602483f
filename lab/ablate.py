"""`python -m lab.ablate`: train the baseline and the cumulative speedup variants, time them,
append one record per run to `<out>/results.jsonl`, and write the report.

Examples:
  python -m lab.ablate                      # the baseline on the default preset
  python -m lab.ablate --all                # baseline + every step, cumulatively, interleaved
  python -m lab.ablate --steps bn_dedupe,bulk_rng --runs 5
  python -m lab.ablate --plan --json --all --preset dawnbench
  python -m lab.ablate --resume reports/20261124-120000-cpu
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import torch

from lab.config import Config, apply_overrides, field_names
from lab.data import Cifar, download_cifar, load_cifar, resolve_data_path, subset
from lab.errors import LabError
from lab.floor import measure_peak_tflops, training_dtype, vendor_peak_tflops
from lab.plan import plan_entry
from lab.presets import PRESETS, get_preset
from lab.profiling import profile_in_subprocess, tb_run_name
from lab.records import append_record, code_hash, device_name, metadata, read_records
from lab.registry import Variant, all_steps, cumulative_variants, get_steps
from lab.trainer import EpochStats, resolve_device, resolve_precision, run_training

REPO_ROOT = Path(__file__).resolve().parent.parent
PLAN_FILE = "plan.json"
RESULTS_FILE = "results.jsonl"
PROFILE_FILE = "profile.jsonl"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.ablate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Documentation: README.md and docs/ (presets, data formats, record schema).",
    )
    jobs = parser.add_argument_group("what to run")
    jobs.add_argument(
        "--all", action="store_true", help="run the baseline and every registered step cumulatively"
    )
    jobs.add_argument(
        "--steps",
        metavar="A,B",
        help="run the baseline and these steps cumulatively, in registry order",
    )
    jobs.add_argument(
        "--list",
        action="store_true",
        help="list the registered steps with titles and the article's claims",
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
        help="finish an interrupted job in OUT, running only the missing runs",
    )
    setup = parser.add_argument_group("how to run it")
    setup.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="scale of the job (default: dawnbench with a GPU, cpu without)",
    )
    setup.add_argument(
        "--data",
        metavar="PATH",
        help="CIFAR-10 image-folder tree or cifar-10-batches-py folder "
        "(default: $LAB_DATA, ../shared/data/cifar10-jpeg, then "
        "~/.cache/lab/cifar-10-batches-py)",
    )
    setup.add_argument(
        "--download",
        action="store_true",
        help="fetch the official python-version archive into the cache "
        "($LAB_CACHE or ~/.cache/lab), verify its MD5, and use it",
    )
    setup.add_argument("--download-url", metavar="URL", help=argparse.SUPPRESS)
    setup.add_argument(
        "--out", metavar="DIR", help="output folder (default: a new reports/<date>-<preset>/)"
    )
    setup.add_argument(
        "--runs", type=int, metavar="N", help="timed runs per variant (default: the preset's)"
    )
    setup.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of timed run 0; run i uses seed+i (default: 0)",
    )
    setup.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="device to train on (default: auto, CUDA when present)",
    )
    setup.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config field, typed (repeatable); keys: " + ", ".join(field_names()),
    )
    setup.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the discarded warm-up run (on by default with several variants)",
    )
    setup.add_argument("--no-progress", action="store_true", help="no progress bar")
    profiling = parser.add_argument_group("profiling and the floor")
    profiling.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the profiled pass per variant (TensorBoard traces under "
        "<out>/tb/ and the where-the-time-goes table)",
    )
    profiling.add_argument(
        "--with-stack",
        action="store_true",
        help="record Python stacks in the traces (bigger, slower to load)",
    )
    profiling.add_argument(
        "--peak-tflops",
        type=float,
        metavar="T",
        help="the device's peak TFLOP/s for the floor, instead of the "
        "measured matmul peak and the vendor figure",
    )
    return parser


# ----------------------------------------------------------------------------- job spec


def job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The invocation that defines a job; stored in plan.json so `--resume` can rebuild it."""
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LabError("--device cuda: no CUDA device is available")
    preset_name = args.preset or ("dawnbench" if device.type == "cuda" else "cpu")
    preset = get_preset(preset_name)
    if args.all and args.steps:
        raise LabError("--all and --steps: give one of them")
    steps = [s.name for s in all_steps()] if args.all else []
    if args.steps:
        steps = [s.name for s in get_steps([n.strip() for n in args.steps.split(",") if n.strip()])]
    runs = args.runs if args.runs is not None else preset.runs
    if runs < 1:
        raise LabError(f"--runs {runs}: must be >= 1")
    return {
        "preset": preset_name,
        "steps": steps,
        "overrides": list(args.overrides),
        "runs": runs,
        "seed": args.seed,
        "device": str(device),
        "warmup": not args.no_warmup and bool(steps),
        "profile": not args.no_profile,
        "with_stack": bool(args.with_stack),
        "peak_tflops": _positive_peak(args.peak_tflops),
    }


def _positive_peak(peak: float | None) -> float | None:
    if peak is not None and peak <= 0:
        raise LabError(f"--peak-tflops {peak:g}: must be > 0")
    return peak


def variants_for(spec: dict[str, Any]) -> list[Variant]:
    base = apply_overrides(get_preset(spec["preset"]).config, spec["overrides"])
    return cumulative_variants(base, get_steps(spec["steps"]) if spec["steps"] else [])


def schedule_runs(spec: dict[str, Any], variants: list[Variant]) -> list[tuple[Variant, int, bool]]:
    """(variant, run index, warm-up?) in execution order: an optional warm-up of the first
    variant, then round-robin over variants so that machine drift spreads evenly."""
    order = [(variants[0], -1, True)] if spec["warmup"] else []
    for run_index in range(spec["runs"]):
        order.extend((variant, run_index, False) for variant in variants)
    return order


# ----------------------------------------------------------------------------- commands


def print_list(as_json: bool) -> None:
    steps = all_steps()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "order": s.order,
                        "title": s.title,
                        "changes": s.changes,
                        "article_step": s.article_step,
                        "article_saved_s": s.article_saved_s,
                        "article_shared_with": s.article_shared_with,
                        "expects": s.expects,
                    }
                    for s in steps
                ],
                indent=2,
            )
        )
        return
    for s in steps:
        claim = (
            "no claim"
            if s.article_saved_s is None
            else f"article: -{s.article_saved_s:g} s on a V100"
        )
        if s.article_shared_with:
            claim += f" (shared with {', '.join(s.article_shared_with)})"
        print(f"{s.order}. {s.name:22s} {s.title}\n   {'':22s} {s.changes}; {claim}")


def print_plan(spec: dict[str, Any], variants: list[Variant], as_json: bool) -> None:
    entries = [plan_entry(v, spec.get("peak_tflops")) for v in variants]
    if as_json:
        print(
            json.dumps(
                {
                    "preset": spec["preset"],
                    "runs": spec["runs"],
                    "warmup": spec["warmup"],
                    "device": spec["device"],
                    "variants": entries,
                },
                indent=2,
            )
        )
        return
    print(f"preset {spec['preset']}, {spec['runs']} run(s) per variant on {spec['device']}")
    for e in entries:
        c = e["config"]
        print(
            f"  {e['name']:22s} width {c['width']}, {e['train_images']} images x {c['epochs']} "
            f"epochs, {e['params']:,} params, {e['flops_per_image']:.3g} FLOPs/image, "
            f"{e['expected_worker_launches']:,} worker launches, "
            f"{e['expected_rng_calls']:,} RNG calls"
        )


def load_data(args: argparse.Namespace, progress: bool) -> Cifar:
    if args.download:
        path = download_cifar(url=args.download_url) if args.download_url else download_cifar()
    else:
        path = resolve_data_path(args.data)
    return load_cifar(path, progress=progress)


def default_out(preset: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return REPO_ROOT / "reports" / f"{stamp}-{preset}"


def prepare_out(args: argparse.Namespace, spec: dict[str, Any], variants: list[Variant]) -> Path:
    """Create the output folder with plan.json; refuse to mix into an existing job."""
    out = Path(args.out) if args.out else default_out(spec["preset"])
    if (out / RESULTS_FILE).exists():
        raise LabError(
            f"--out {out}: already holds {RESULTS_FILE}; use --resume {out} or a new folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    plan = {
        "spec": spec,
        "code_hash": code_hash(),
        "variants": {v.name: v.config.to_dict() for v in variants},
    }
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    return out


def resume_spec(out: Path) -> tuple[dict[str, Any], list[Variant], set[tuple[str, int]]]:
    """The stored job, checked against today's code and configs, and the runs already done."""
    plan_path = out / PLAN_FILE
    if not plan_path.is_file():
        raise LabError(f"--resume {out}: no {PLAN_FILE} (not a lab output folder)")
    try:
        plan = json.loads(plan_path.read_text())
        spec = plan["spec"]
    except (json.JSONDecodeError, KeyError):
        raise LabError(f"--resume {plan_path}: unreadable plan") from None
    if plan.get("code_hash") != code_hash():
        raise LabError(
            f"--resume {out}: the code changed since the job started "
            f"(code {plan.get('code_hash')} then, {code_hash()} now); "
            "start a new job instead of mixing runs"
        )
    variants = variants_for(spec)
    now = {v.name: v.config.to_dict() for v in variants}
    if now != plan["variants"]:
        raise LabError(
            f"--resume {out}: the variants' configs differ from the stored plan; "
            "start a new job instead of mixing runs"
        )
    done = set()
    results = out / RESULTS_FILE
    if results.exists():
        for record in read_records(results):
            if record.get("code_hash") != plan["code_hash"]:
                raise LabError(
                    f"--resume {results}: holds runs of other code ({record.get('code_hash')})"
                )
            if not record["warmup"]:
                done.add((record["variant"], record["run_index"]))
    return spec, variants, done


class Progress:
    """One bar over every epoch of the job, so its ETA covers the whole job."""

    def __init__(self, total_epochs: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total_epochs,
            unit="epoch",
            disable=not enabled,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.label = ""

    def add_total(self, epochs: int) -> None:
        self.bar.total = (self.bar.total or 0) + epochs
        self.bar.refresh()

    def start_run(self, label: str) -> None:
        self.label = label
        self.bar.set_description(label)

    def epoch_done(self, stats: EpochStats, epochs: int) -> None:
        self.bar.set_postfix_str(
            f"epoch {stats.epoch}/{epochs} loss {stats.train_loss:.3f} "
            f"acc {stats.test_accuracy:.1%} {stats.images_per_s:.0f} img/s",
            refresh=False,
        )
        self.bar.update(1)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def make_record(
    spec: dict[str, Any],
    variant: Variant,
    run_index: int,
    warmup: bool,
    seed: int,
    data: Cifar,
    measurements: dict[str, Any],
    device: torch.device,
    peak: dict[str, Any],
) -> dict[str, Any]:
    entry = plan_entry(variant)
    meta = metadata(device)
    return {
        **meta,
        "preset": spec["preset"],
        "variant": variant.name,
        "steps": list(variant.steps),
        "run_index": run_index,
        "warmup": warmup,
        "seed": seed,
        "config": variant.config.to_dict(),
        "params": entry["params"],
        "flops_per_image": entry["flops_per_image"],
        "expected": {
            "worker_launches": entry["expected_worker_launches"],
            "rng_calls": entry["expected_rng_calls"],
        },
        "data": {
            "source": data.source,
            "train_images": len(data.train_labels),
            "test_images": len(data.test_labels),
            "classes": list(data.classes),
        },
        "total_flops": entry["total_flops"],
        "peak": peak,
        "measurements": measurements,
    }


def measure_peak(spec: dict[str, Any], variants: list[Variant], device: torch.device) -> dict:
    """The device's peak for the floor: measured matmul throughput in the training dtype, the
    vendor's figure for known GPUs, and which one the floor uses (`--peak-tflops` wins)."""
    dtype = training_dtype(device, resolve_precision(variants[0].config, device))
    measured = measure_peak_tflops(device, dtype)
    vendor = vendor_peak_tflops(device_name(device))
    override = spec.get("peak_tflops")
    if override:
        used, source = override, "--peak-tflops"
    elif vendor:
        used, source = vendor, "vendor"
    else:
        used, source = measured, "measured"
    return {
        "measured_tflops": measured,
        "vendor_tflops": vendor,
        "override_tflops": override,
        "used_tflops": used,
        "source": source,
        "dtype": str(dtype).removeprefix("torch."),
    }


class SubsetCache:
    """Each distinct subset of the decoded data is built once per process."""

    def __init__(self, data: Cifar) -> None:
        self.data, self.subsets = data, {}

    def __call__(self, config: Config) -> Cifar:
        key = (config.train_images, config.test_images, config.subset_seed)
        if key not in self.subsets:
            self.subsets[key] = subset(self.data, *key)
        return self.subsets[key]


def run_timed(
    spec: dict[str, Any],
    variants: list[Variant],
    out: Path,
    subsets: SubsetCache,
    done: set[tuple[str, int]],
    progress: Progress,
    peak: dict[str, Any],
) -> int:
    """Run every scheduled run not in `done`, appending each record as it finishes."""
    device = torch.device(spec["device"])
    todo = [(v, i, w) for v, i, w in schedule_runs(spec, variants) if (v.name, i) not in done]
    if all(w for _, _, w in todo):
        todo = []  # only a warm-up left: nothing to measure
    progress.add_total(sum(v.config.epochs for v, _, _ in todo))
    for variant, run_index, warmup in todo:
        data = subsets(variant.config)
        seed = spec["seed"] + max(run_index, 0)
        label = f"{variant.name} " + (
            "warm-up" if warmup else f"run {run_index + 1}/{spec['runs']}"
        )
        progress.start_run(label)
        result = run_training(variant.config, data, device, seed, on_epoch=progress.epoch_done)
        m = result.to_dict(variant.config.target_accuracy)
        record = make_record(spec, variant, run_index, warmup, seed, data, m, device, peak)
        append_record(out / RESULTS_FILE, record)
        progress.write(
            f"{label}: {m['total_s']:.2f} s (train {m['train_s']:.2f} s, "
            f"eval {m['eval_s']:.2f} s), test accuracy {m['final_test_accuracy']:.2%}"
        )
    return len(todo)


def profiled_variants(out: Path) -> set[str]:
    path = out / PROFILE_FILE
    return {r["variant"] for r in read_records(path)} if path.exists() else set()


def run_profiles(
    spec: dict[str, Any],
    variants: list[Variant],
    out: Path,
    subsets: SubsetCache,
    progress: Progress,
) -> int:
    """One profiled pass per variant not yet profiled, each appended to profile.jsonl."""
    device = torch.device(spec["device"])
    done = profiled_variants(out)
    todo = [(index, v) for index, v in enumerate(variants) if v.name not in done]
    for index, variant in todo:
        progress.start_run(f"{variant.name} profiled pass")
        run_name = tb_run_name(index, variant.name)
        result = profile_in_subprocess(
            variant,
            subsets(variant.config),
            device,
            spec["seed"],
            out / "tb" / run_name,
            with_stack=spec.get("with_stack", False),
        )
        append_record(
            out / PROFILE_FILE,
            {
                **metadata(device),
                "preset": spec["preset"],
                "variant": variant.name,
                "steps": list(variant.steps),
                "tb_run": run_name,
                "config": variant.config.to_dict(),
                **result,
            },
        )
        shares = result["breakdown"]["shares"]
        progress.write(
            f"{variant.name} profiled: data {shares['data']:.0%}, compute "
            f"{shares['compute']:.0%}, other {shares['other']:.0%} of step time "
            f"(trace in {out / 'tb' / run_name})"
        )
    return len(todo)


def run_job(
    spec: dict[str, Any],
    variants: list[Variant],
    out: Path,
    data: Cifar,
    done: set[tuple[str, int]],
    progress_enabled: bool,
) -> int:
    """Timed runs (interleaved), then the profiled passes; returns the timed runs made."""
    device = torch.device(spec["device"])
    data_note = {"decode_s": data.decode_s, "load_s": data.load_s, "cache_hit": data.cache_hit}
    append_record(out / "data.jsonl", {**metadata(device), **data_note, "source": data.source})
    peak = measure_peak(spec, variants, device)
    subsets = SubsetCache(data)
    progress = Progress(0, progress_enabled)
    try:
        ran = run_timed(spec, variants, out, subsets, done, progress, peak)
        if spec.get("profile", True):
            run_profiles(spec, variants, out, subsets, progress)
    finally:
        progress.close()
    return ran


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
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


def _main(args: argparse.Namespace) -> int:
    if args.list:
        print_list(args.json)
        return 0
    if args.resume:
        out = Path(args.resume)
        spec, variants, done = resume_spec(out)
    else:
        spec = job_spec(args)
        variants = variants_for(spec)
        done = set()
    if args.plan:
        print_plan(spec, variants, args.json)
        return 0
    progress = not args.no_progress and sys.stderr.isatty()
    data = load_data(args, progress)  # before creating the folder: bad data writes nothing
    if not args.resume:
        out = prepare_out(args, spec, variants)
    if data.cache_hit:
        print(
            f"data: {data.source} (decoded cache, loaded in {data.load_s:.2f} s)", file=sys.stderr
        )
    else:
        print(
            f"data: {data.source} decoded once in {data.decode_s:.1f} s (cached for next time; "
            "not part of any timing)",
            file=sys.stderr,
        )
    ran = run_job(spec, variants, out, data, done, progress)
    from lab.report import write_report

    write_report(out)
    print(f"{ran} run(s) done; results, summary and report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
