"""Making runs, the one way both engines make them (`lab.engine.runner` here, every slot of the
job in turn; `lab.engine.ray_rounds` one round's slots inside its task): the job's data, each
distinct subset of it, the device's peak for the floor, and the record of each run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lab.engine.job import Job, Slot
from lab.engine.metadata import device_name, metadata
from lab.engine.peak import measure_peak_tflops, training_dtype
from lab.engine.plan import plan_entry
from lab.engine.rounds import Progress, run_label
from lab.errors import LabError
from lab.recipe.config import Config
from lab.records.floor import vendor_peak_tflops
from lab.records.jsonl import run_record
from lab.train.data import Cifar, load_cifar, source_key, subset
from lab.train.precision import resolve_precision
from lab.train.trainer import run_training


def load_job_data(job: Job, progress: bool) -> Cifar:
    """The job's data, refused when the files changed since the job was planned."""
    assert job.data is not None, "a job that trains has a data source"
    path = Path(job.data.path)
    if not path.exists():
        raise LabError(f"{path}: the job's data is gone (it was planned on this folder)")
    _, fingerprint = source_key(path)
    if fingerprint != job.data.fingerprint:
        raise LabError(
            f"{path}: the job's data changed since it started (files added, removed or "
            "modified); start a new job instead of mixing runs"
        )
    return load_cifar(path, progress=progress)


class SubsetCache:
    """Each distinct subset of the decoded data is built once per process."""

    def __init__(self, data: Cifar) -> None:
        self.data: Cifar = data
        self.subsets: dict[tuple, Cifar] = {}

    def __call__(self, config: Config) -> Cifar:
        key = (config.train_images, config.test_images, config.subset_seed)
        if key not in self.subsets:
            self.subsets[key] = subset(self.data, *key)
        return self.subsets[key]


def measure_peak(job: Job, device: torch.device) -> dict[str, Any]:
    """The device's peak for the floor: measured matmul throughput in the training dtype, the
    vendor's figure for known GPUs, and which one the floor uses (`--peak-tflops` wins)."""
    dtype = training_dtype(device, resolve_precision(job.base_config(), device))
    measured = measure_peak_tflops(device, dtype)
    vendor = vendor_peak_tflops(device_name(device))
    if job.peak_tflops:
        used, source = job.peak_tflops, "--peak-tflops"
    elif vendor:
        used, source = vendor, "vendor"
    else:
        used, source = measured, "measured"
    return {
        "measured_tflops": measured,
        "vendor_tflops": vendor,
        "override_tflops": job.peak_tflops,
        "used_tflops": used,
        "source": source,
        "dtype": str(dtype).removeprefix("torch."),
    }


def run_record_of(job: Job, slot: Slot, seed: int, data: Cifar, m: dict, peak: dict) -> dict:
    """The record of one run: the job, its slot and variant, the data, the measurements."""
    variant = slot.variant
    return run_record(
        job=job.to_dict(),
        slot={"round": slot.round, "position": slot.position, "seed": seed},
        variant={
            "name": variant.name,
            "role": variant.role,
            "steps": variant.steps,
            "config": variant.config.to_dict(),
        },
        plan=plan_entry(variant),
        data={
            "source": data.source,
            "fingerprint": data.fingerprint,
            "train_images": len(data.train_labels),
            "test_images": len(data.test_labels),
            "classes": list(data.classes),
        },
        measurements=m,
        peak=peak,
        meta=metadata(torch.device(job.device)),
    )


def run_slots(
    job: Job,
    slots: list[Slot],
    subsets: SubsetCache,
    device: torch.device,
    peak: dict,
    progress: Progress,
) -> Iterator[tuple[Slot, dict]]:
    """Train `slots` in the given order on this process and this device, yielding each run's
    slot and record the moment the run ends. The one way a run is made: locally, every slot of
    the job in turn; on Ray (`lab.engine.ray_rounds`), one round's slots inside its task."""
    for slot in slots:
        data = subsets(slot.variant.config)
        seed = job.seed + max(slot.round, 0)
        progress.start_run(run_label(slot, job))
        config = slot.variant.config
        result = run_training(config, data, device, seed, on_epoch=progress.epoch_done)
        m = result.to_dict(config.target_accuracy)
        yield slot, run_record_of(job, slot, seed, data, m, peak)


def driver_device(job: Job) -> torch.device:
    """The device of this process: the job's, except a Ray driver without the job's GPU."""
    if job.device == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")  # only allowed with --ray: the rounds run on the workers
    return torch.device(job.device)
