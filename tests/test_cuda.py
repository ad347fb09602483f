"""What only a GPU can show, written now so the GPU run only has to run them (`-m cuda`);
skipped cleanly without one (tests/conftest.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from lab.train.clock import CudaClock, PhaseTimes
from lab.train.data import subset
from lab.train.pipeline import build_loader_pipeline
from lab.train.precision import Placement
from lab.train.trainer import Trainer, no_phase, run_training
from tests.test_gpu_ready import (
    SMALL,
    baseline_512,
    final_variant,
    first_batch,
    gradients,
    hold_the_weights_of,
)

pytestmark = pytest.mark.cuda
GPU = torch.device("cuda")


def gpu_trainer(config, cifar) -> Trainer:
    data = subset(cifar, config.train_images, config.test_images, config.subset_seed)
    return Trainer(config, data, GPU, 0)


def test_cuda_clock_times_the_work_not_the_launch():
    clock, times = CudaClock(), PhaseTimes(CudaClock())
    a = torch.randn(4096, 4096, device=GPU)
    torch.cuda.synchronize()
    with times.phase("forward"):
        for _ in range(20):
            a = a @ a / 4096
    times.end_step()
    start = clock.mark()
    torch.cuda.synchronize()
    assert clock.seconds(start, clock.mark()) >= 0
    # 20 matmuls of 4096^3 take milliseconds; their launches, microseconds.
    assert times.totals["forward"] > 1e-3


@pytest.mark.parametrize("make", [final_variant, baseline_512], ids=["final", "baseline"])
@pytest.mark.parametrize("precision", ["fp16", "autocast"])
def test_fp16_and_autocast_steps_on_cuda(precision, make, real_cifar):
    """The issue's criterion at the article's width on the GPU's own kernels, on the same
    weights and batch (`same_weights_and_batch`; docs/series.md has the CPU's figures)."""
    reference = gpu_trainer(make(precision="fp32", width=64), real_cifar)
    low = gpu_trainer(make(precision=precision, width=64), real_cifar)
    low.model.load_state_dict(reference.model.state_dict())
    if precision == "fp16":  # the fp16 model's own weights, upcast: what it can hold
        hold_the_weights_of(low, reference)
    images, labels = first_batch(reference)
    images = images.half().float() if precision == "fp16" else images
    full, half = gradients(reference, images, labels), gradients(low, images, labels)
    for name in full:
        cosine = F.cosine_similarity(full[name].flatten(), half[name].flatten(), dim=0)
        assert cosine >= 0.99 and half[name].any(), (name, float(cosine))
    low._set_lr(0, 1)
    inputs = low.placement.inputs(images, labels)
    assert torch.isfinite(low._step(*inputs, 1, no_phase, low._ledger()))


def test_device_pipeline_on_cuda_draws_on_the_device(real_cifar):
    config = final_variant(width=16, epochs=0.5)
    trainer = gpu_trainer(config, real_cifar)
    assert trainer.bulk_generator.device.type == "cuda"
    images, labels = first_batch(trainer)
    assert images.is_cuda and labels.is_cuda and images.dtype == torch.float16
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    result = run_training(config, data, GPU, seed=0)
    assert result.warmup_s > 0 and result.rng_calls == 5


def test_pinned_memory_batches_on_cuda(real_cifar):
    config = dataclasses.replace(SMALL, train_workers=2)
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    placement = Placement.from_config(config, GPU)
    assert placement.pin_memory
    pipeline = build_loader_pipeline(config, data, placement, seed=0)
    images, _, _ = next(iter(pipeline.train_loader))
    assert images.is_pinned()


@pytest.mark.parametrize("make", [final_variant, baseline_512], ids=["final", "baseline"])
def test_phases_tile_a_cuda_run_on_events(make, real_cifar):
    """On CUDA the ledger's marks are events read at each pass's end: the phases still sum to
    the synchronised wall clock's timed region, and the remainder stays small (the launches
    before a pass's first event and after its last)."""
    config = make(epochs=1)
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    result = run_training(config, data, GPU, seed=0)
    phases = result.phases_s
    assert sum(phases.values()) == pytest.approx(result.total_s, rel=1e-9)
    assert abs(phases["other"]) <= 0.05 * result.total_s, phases
    assert phases["forward"] > 0 and phases["backward"] > 0


def _chapter2_final():
    """Chapter 2's last variant (Muon, compiled, channels_last, fp16) at the smoke scale."""
    from lab.recipe.registry import series_steps
    from lab.recipe.variant import apply_steps
    from tests.conftest import SERIES_SMOKE

    return apply_steps(SERIES_SMOKE, series_steps("both"))


def test_chapter2_compiles_in_the_warm_up_and_trains_in_fp16_channels_last(real_cifar):
    config = _chapter2_final()
    trainer = gpu_trainer(config, real_cifar)
    assert trainer.placement.memory_format == torch.channels_last
    trainer.warm_up()
    assert trainer.compiles and trainer.compile_s > 0
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_epoch(0, max_steps=3)
    moved = [not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters(), strict=True)]
    assert any(moved)
    assert trainer.evaluate().accuracy >= 0


def test_chapter2_runs_end_to_end_on_the_gpu(real_cifar):
    config = _chapter2_final()
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    result = run_training(config, data, GPU, 0)
    assert result.compile_s > 0 and result.eval_views == 6
    assert all(torch.isfinite(torch.tensor(e.train_loss)) for e in result.epochs)
