"""What a GPU run relies on, tested on the CPU: the summed loss (exact in fp32, fp16 gradients in
range), fp16 and autocast runs, the whitening sample, the warm-up outside the timed region, RNG
draws counted where they happen, Page's update, and the phase clock (docs/series.md)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lab.recipe.config import Config
from lab.recipe.presets import get_preset
from lab.recipe.registry import series_steps
from lab.recipe.variant import apply_steps
from lab.recipe.workload import device_rng_calls_per_epoch, expected_rng_calls
from lab.train import device_data
from lab.train.clock import CpuClock, PhaseTimes
from lab.train.data import subset
from lab.train.precision import Placement
from lab.train.trainer import Trainer, no_phase, run_training, whitening_sample
from lab.train.update import PageNesterov

CPU = torch.device("cpu")
# Smoke scale on the main thread, with enough images for two batches of 512.
SMALL = dataclasses.replace(
    get_preset("smoke").config, train_images=1100, train_workers=0, test_workers=0
)


def final_variant(**fields) -> Config:
    return dataclasses.replace(apply_steps(SMALL, series_steps("full")), **fields)


def baseline_512(**fields) -> Config:
    return dataclasses.replace(SMALL, batch_size=512, **fields)


def trainer_for(config: Config, cifar, seed: int = 0) -> Trainer:
    data = subset(cifar, config.train_images, config.test_images, config.subset_seed)
    return Trainer(config, data, CPU, seed)


def first_batch(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    batches, _ = trainer.pipeline.epoch(torch.Generator().manual_seed(0))
    images, labels, _ = next(iter(batches))
    return images, labels


def gradients(trainer: Trainer, images, labels) -> dict[str, torch.Tensor]:
    images, labels = trainer.placement.inputs(images, labels)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss = trainer._loss(images, labels)
    (trainer.scaler.scale(loss) if trainer.scaler is not None else loss).backward()
    return {
        name: p.grad.float().clone()
        for name, p in trainer.model.named_parameters()
        if p.requires_grad
    }


# ----------------------------------------------------------------------------- 1. the loss


@pytest.mark.parametrize("make", [final_variant, baseline_512], ids=["final", "baseline"])
def test_summed_loss_step_equals_the_mean_loss_step_in_fp32(make, real_cifar):
    """Two steps of the trainer (summed loss, rate / B, decay x B) against torch's SGD on the
    mean loss at the configured rate and decay."""
    trainer = trainer_for(make(precision="fp32", width=4), real_cifar)
    config = trainer.config
    reference = copy.deepcopy(trainer.model)
    trainable = [(n, p) for n, p in reference.named_parameters() if p.requires_grad]
    weights = [p for n, p in trainable if "bias" not in n]
    biases = [p for n, p in trainable if "bias" in n]
    groups = [
        {"params": weights, "weight_decay": config.weight_decay, "scale": 1.0},
        {
            "params": biases,
            "weight_decay": config.weight_decay * config.bias_wd_scale,
            "scale": config.bias_lr_scale,
        },
    ]
    optimizer = torch.optim.SGD(
        [g for g in groups if g["params"]], lr=0.0, momentum=config.momentum, nesterov=True
    )
    images, labels = first_batch(trainer)
    for step in (1, 2):
        trainer._set_lr(0, step)
        trainer._step(images, labels, step, no_phase, trainer._ledger())
        rate = config.schedule(step / trainer.pipeline.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = rate * group["scale"]
        optimizer.zero_grad()
        loss = F.cross_entropy(reference(images), labels, label_smoothing=config.label_smoothing)
        loss.backward()
        optimizer.step()
    for (name, ours), theirs in zip(
        trainer.model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5, msg=name)


def same_weights_and_batch(make, width: int, cifar, seed: int = 0):
    """An fp16 trainer, an fp32 trainer holding exactly the fp16 model's weights (upcast), and a
    batch of 512 rounded to fp16. The fp16 model can hold no other weights and see no other
    inputs, so the comparison measures its arithmetic, not the rounding of its starting point
    (which alone moves the final variant's worst cosine from 0.997 to 0.989 at width 16)."""
    reference = trainer_for(make(precision="fp32", width=width), cifar, seed)
    half = trainer_for(make(precision="fp16", width=width), cifar, seed)
    half.model.load_state_dict(reference.model.state_dict())
    hold_the_weights_of(half, reference)
    images, labels = first_batch(reference)
    return reference, half, images.half().float(), labels


def hold_the_weights_of(low: Trainer, reference: Trainer) -> None:
    """`reference` takes `low`'s weights, upcast to fp32: what a low-precision model holds."""
    reference.model.load_state_dict(
        {
            name: value.float() if value.is_floating_point() else value
            for name, value in low.model.state_dict().items()
        }
    )


def assert_fp16_gradients_follow_fp32(make, width: int, cifar) -> None:
    """The issue's criterion on the same weights and batch of 512: every trainable tensor's
    fp16-vs-fp32 gradient cosine >= 0.99, none all zero."""
    reference, half, images, labels = same_weights_and_batch(make, width, cifar)
    full, low = gradients(reference, images, labels), gradients(half, images, labels)
    cosine_of = cosines(full, low)
    assert min(cosine_of.values()) >= 0.99, worst(cosine_of)
    assert all(low[name].any() for name in low)


@contextmanager
def on_every_leaf(model: torch.nn.Module, hook) -> Iterator[None]:
    """`hook` as a forward hook of every leaf module (its return value replaces the output)."""
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def cosines(full: dict, low: dict) -> dict[str, float]:
    return {
        name: float(F.cosine_similarity(full[name].flatten(), low[name].flatten(), dim=0))
        for name in full
    }


def worst(cosine_of: dict[str, float], n: int = 3) -> list[tuple[str, float]]:
    return sorted(cosine_of.items(), key=lambda kv: kv[1])[:n]


class Fp16Backward(torch.autograd.Function):
    """The identity forward; backward stores the incoming gradient in fp16, as an fp16 model's
    backward stores every activation gradient, and counts its non-zero elements below fp16's
    smallest normal number (subnormal: fewer significant bits) and those it rounds to zero."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: dict) -> torch.Tensor:
        ctx.counts = counts
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        nonzero = grad[grad != 0].abs()
        ctx.counts["nonzero"] += nonzero.numel()
        ctx.counts["subnormal"] += int((nonzero < torch.finfo(torch.float16).tiny).sum())
        stored = grad.half()
        ctx.counts["flushed"] += int((stored[grad != 0] == 0).sum())
        return stored.float(), None


def backward_through_fp16(trainer: Trainer, images, labels, loss_scale: float):
    """fp32 gradients of `loss_scale` x the trainer's loss with every activation gradient
    stored in fp16 on its way back, and the counts of `Fp16Backward`."""
    counts = {"nonzero": 0, "subnormal": 0, "flushed": 0}
    loss = trainer._loss
    trainer._loss = lambda batch, targets: loss(batch, targets) * loss_scale
    try:
        with on_every_leaf(trainer.model, lambda _m, _i, out: Fp16Backward.apply(out, counts)):
            return gradients(trainer, images, labels), counts
    finally:
        trainer._loss = loss


@pytest.mark.parametrize("make", [final_variant, baseline_512], ids=["final", "baseline"])
def test_summed_loss_keeps_backward_gradients_in_fp16_range(make, real_cifar):
    """The mechanism, in fp32 arithmetic with the activation gradients stored in fp16 (width 8,
    batch 512, seed 0; width 16 reads the same). Measured, final / baseline: with the old mean
    loss (the summed one / 512) 99.99% / 97.3% of the non-zero elements are subnormal in fp16,
    6.5% / 15% round to zero and the worst tensor's gradient cosine is 0.998 / 0.900; summed,
    16% / 22% are subnormal, 0.22% / 0.03% round to zero and every cosine is 1.0000."""
    trainer = trainer_for(make(precision="fp32", width=8), real_cifar)
    images, labels = first_batch(trainer)
    exact = gradients(trainer, images, labels)
    summed, summed_counts = backward_through_fp16(trainer, images, labels, 1.0)
    mean, mean_counts = backward_through_fp16(trainer, images, labels, 1 / len(labels))
    assert summed_counts["flushed"] < 0.01 * summed_counts["nonzero"]
    assert summed_counts["subnormal"] < 0.4 * summed_counts["nonzero"]
    summed_cosines = cosines(exact, summed)
    assert min(summed_cosines.values()) >= 0.9999, worst(summed_cosines)
    # The old form, for contrast: it is what the summed loss fixes.
    assert mean_counts["subnormal"] > 0.9 * mean_counts["nonzero"]
    assert mean_counts["flushed"] > 0.03 * mean_counts["nonzero"]
    # Its worst cosine is below the summed form's: 0.998 on the machine measured above, 0.9994 on
    # another CPU (Xeon, avx512_fp16): a fixed threshold would test the machine, not the loss.
    assert min(cosines(exact, mean).values()) < min(summed_cosines.values())


def test_fp16_gradients_follow_fp32_at_batch_512(real_cifar):
    """The fp16 model (fp32 BatchNorm) of the final series variant at width 16 against fp32 on
    the same weights and batch of 512: every trainable tensor's gradient cosine >= 0.99 and none
    all zero. Measured (seed 0 / 1): smallest 0.9972 / 0.9977; with the old mean loss, the
    article's width 64 falls to 0.969 (6 of 17 tensors below 0.99; docs/series.md)."""
    assert_fp16_gradients_follow_fp32(final_variant, 16, real_cifar)


def test_narrow_resnet18_gradients_are_ill_conditioned_in_fp16(real_cifar):
    """Why the Part-1 baseline's per-tensor criterion is checked at the article's width (the
    slow test below), not at width 16: there, rounding only the forward activations of an fp32
    model to fp16 (what no fp16 model can avoid; exact arithmetic otherwise) already turns a
    16-channel BatchNorm tensor's gradient below 0.99 (measured: 0.976, `1.bn1.weight`, 4 of
    56 tensors), so no fp16 implementation could meet it; at width 64 the same rounding leaves
    every tensor >= 0.991."""
    reference = trainer_for(baseline_512(precision="fp32", width=16), real_cifar)
    images, labels = first_batch(reference)
    exact = gradients(reference, images, labels)
    with on_every_leaf(reference.model, lambda _m, _i, out: out.half().float()):
        rounded = gradients(reference, images, labels)
    cosine_of = cosines(exact, rounded)
    assert min(cosine_of.values()) < 0.99, worst(cosine_of)
    assert min(cosine_of.values()) > 0.9, worst(cosine_of)


@pytest.mark.slow
@pytest.mark.parametrize("make", [final_variant, baseline_512], ids=["final", "baseline"])
def test_fp16_gradients_follow_fp32_at_the_articles_width(make, real_cifar):
    """The issue's criterion at width 64, batch 512, on the same weights and batch: every
    trainable tensor's fp16-vs-fp32 gradient cosine >= 0.99, none all zero; the baseline as the
    original trained it (all fp16, BatchNorm included). Measured (seed 0), final / baseline:
    smallest 0.9976 / 0.9903 (`2.bn1.weight`: at the edge); with the old mean loss 0.969 (6 of
    17 tensors below 0.99) / 0.931 (28 of 56). 2.5 / 3.5 minutes: fp16 convolutions are slow on
    a CPU."""
    assert_fp16_gradients_follow_fp32(make, 64, real_cifar)


# Slow (~8 s): the gradient tests above keep fp16's numerics in the default suite.
@pytest.mark.slow
def test_fp16_training_on_the_cpu_learns_like_fp32(real_cifar):
    """A short real run with `precision=fp16` (fp16 model, fp32 BatchNorm): its loss falls, and
    per epoch it stays within 0.06 of the fp32 run's: 3x the fp32 runs' own seed-to-seed standard
    deviation at this scale (0.016 / 0.019 in epochs 1 / 2, seeds 0-4), since after the first
    step the two runs follow different paths. Measured: seed 0 differs by +0.0005 / +0.0115;
    over seeds 0-4 the largest difference is 0.058 (seed 2, epoch 2, fp16 lower)."""
    config = dataclasses.replace(get_preset("smoke").config, bn_precision="fp32", epochs=2)
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    losses = {}
    for precision in ("fp32", "fp16"):
        run = run_training(dataclasses.replace(config, precision=precision), data, CPU, seed=0)
        assert run.precision == precision
        losses[precision] = [epoch.train_loss for epoch in run.epochs]
    assert losses["fp16"][-1] < losses["fp16"][0]
    for full, half in zip(losses["fp32"], losses["fp16"], strict=True):
        assert half == pytest.approx(full, abs=0.06)


def test_autocast_runs_on_the_cpu_with_a_scaler_of_its_device(real_cifar):
    trainer = trainer_for(final_variant(precision="autocast", width=4), real_cifar)
    assert trainer.scaler is not None and trainer.scaler._device == "cpu"
    with trainer.placement.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.float16
    images, labels = first_batch(trainer)
    before = [p.clone() for p in trainer.model.parameters()]
    trainer._set_lr(0, 1)
    loss = trainer._step(*trainer.placement.inputs(images, labels), 1, no_phase, trainer._ledger())
    assert torch.isfinite(loss)
    moved = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)]
    assert any(moved) and all(p.dtype == torch.float32 for p in trainer.model.parameters())


# ----------------------------------------------------------------------------- 2. whitening


def test_whitening_sample_covers_every_class_of_a_class_ordered_set(real_cifar):
    labels = real_cifar.train_labels
    assert (np.diff(labels) >= 0).all()  # an image folder is read class by class
    config = Config(whitening_images=500)
    sample = whitening_sample(len(labels), config)
    assert len(set(labels[sample].tolist())) == 10
    assert len(set(labels[:500].tolist())) == 1  # the first 500: airplanes only
    assert np.array_equal(sample, whitening_sample(len(labels), config))  # seeded
    other = whitening_sample(len(labels), dataclasses.replace(config, whitening_seed=1))
    assert not np.array_equal(sample, other)
    assert len(whitening_sample(300, config)) == 300  # a subset smaller than the sample


# ----------------------------------------------------------------------------- 3. warm-up


def test_warmup_covers_every_batch_shape():
    def shapes(**fields) -> tuple[list[int], list[int]]:
        config = Config(batch_size=128, test_batch_size=512, **fields)
        return Placement.from_config(config, CPU).warmup_shapes(500, 1200)

    assert shapes() == ([128, 116], [512, 176])
    assert shapes(drop_last=True) == ([128], [512, 176])


@pytest.mark.parametrize("make", [final_variant, baseline_512], ids=["final", "baseline"])
def test_warmup_does_not_change_the_run(make, real_cifar):
    config = make(width=4, epochs=1)
    trained = []
    for warm in (False, True):  # one after the other: the per-sample path draws on the
        trainer = trainer_for(config, real_cifar)  # process's generator, seeded per trainer
        if warm:
            assert trainer.warm_up() > 0 and trainer.warmup_s > 0
        trainer.train_epoch(0)
        trainer.evaluate()
        trained.append(trainer)
    plain, warmed = trained
    for (name, a), b in zip(
        plain.model.state_dict().items(), warmed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    for a, b in zip(plain.optimizer.state.values(), warmed.optimizer.state.values(), strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_runs_record_their_warmup(real_cifar):
    config = dataclasses.replace(SMALL, epochs=0.25)
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    result = run_training(config, data, CPU, seed=0)
    assert result.to_dict(0.5)["warmup_s"] == result.warmup_s > 0


# ----------------------------------------------------------------------------- 5. RNG draws


def test_device_rng_calls_are_counted_where_drawn(real_cifar, monkeypatch):
    """The count moves with the augmentation actually run, not with the plan's formula."""
    config = final_variant(width=4, epochs=0.5)

    def counted(config: Config) -> int:
        trainer = trainer_for(config, real_cifar)
        trainer.train_epoch(0, max_steps=1)
        return trainer.rng_calls

    assert counted(config) == device_rng_calls_per_epoch(config) == 5
    with_cutout = dataclasses.replace(config, cutout=8)
    assert counted(with_cutout) == 7
    original = device_data.transforms
    monkeypatch.setattr(device_data, "transforms", lambda c: original(c) + original(c)[1:2])
    assert counted(config) == 7  # one more transform: two more draws; the plan still says 5
    assert expected_rng_calls(config, 1100) == 5


def test_loader_rng_calls_are_counted_in_the_workers(real_cifar):
    config = dataclasses.replace(SMALL, epochs=0.25, train_workers=2, cutout=6)
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    result = run_training(config, data, CPU, seed=0)
    assert result.rng_calls == 5 * result.epochs[0].trained_images
    bulk = dataclasses.replace(config, augment_rng="bulk")
    assert run_training(bulk, data, CPU, seed=0).rng_calls == 5


# ----------------------------------------------------------------------------- 7. Page's update


def test_page_update_keeps_each_gradients_rate_in_the_velocity():
    """One weight, loss = w (gradient 1), no decay, rates 1, 2, 3, momentum 0.5. Page's:
    v = 0.5 v - lr; w += -lr + 0.5 v. torch's: b = 0.5 b + 1; w -= lr (1 + 0.5 b)."""
    rates = (1.0, 2.0, 3.0)

    def run(make) -> list[float]:
        weight = torch.nn.Parameter(torch.zeros(()))
        optimizer = make([weight])
        path = []
        for rate in rates:
            optimizer.param_groups[0]["lr"] = rate
            optimizer.zero_grad()
            weight.backward()
            optimizer.step()
            path.append(float(weight.detach()))
        return path

    page = run(lambda p: PageNesterov(p, momentum=0.5))
    torch_sgd = run(lambda p: torch.optim.SGD(p, lr=0.0, momentum=0.5, nesterov=True))
    # Page: v = -1, w = -1.5; v = -2.5, w = -1.5 - 2 - 1.25 = -4.75; v = -4.25, w = -9.875.
    assert page == pytest.approx([-1.5, -4.75, -9.875])
    # torch: b = 1, w = -1.5; b = 1.5, w = -1.5 - 2 * 1.75 = -5; b = 1.75, w = -5 - 3 * 1.875.
    assert torch_sgd == pytest.approx([-1.5, -5.0, -10.625])


def test_page_update_reads_the_schedule_one_step_on(real_cifar):
    config = dataclasses.replace(SMALL, width=4, batch_size=100)
    for update, first_rate in (("torch", 0.0), ("page", config.schedule(1 / 11))):
        trainer = trainer_for(dataclasses.replace(config, sgd_update=update), real_cifar)
        trainer._set_lr(0, 0)
        rate = trainer.optimizer.param_groups[0]["lr"] * config.batch_size
        assert rate == pytest.approx(first_rate) and (rate > 0) == (update == "page")


# ----------------------------------------------------------------------------- 4. phase clock


class TickClock:
    """A clock that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def mark(self) -> float:
        self.now += 1.0
        return self.now

    def seconds(self, start: float, end: float) -> float:
        return end - start


def test_phase_times_add_up_the_kept_steps():
    labels: list[str] = []

    def label(name: str):
        labels.append(name)
        return torch.profiler.record_function(name)

    times = PhaseTimes(TickClock(), label)
    for keep in (False, True, True):
        with times.phase("forward"):
            with times.phase("inner"):
                pass
        with times.phase("backward"):
            pass
        times.end_step(keep)
    # forward spans its own two marks and inner's two: 3 ticks; backward 1; inner 1.
    assert dict(times.totals) == {"forward": 6.0, "backward": 2.0, "inner": 2.0}
    assert times.steps == 2 and labels.count("forward") == 3


def test_cpu_clock_measures_the_work_between_marks():
    clock = CpuClock()
    start = clock.mark()
    torch.randn(200, 200) @ torch.randn(200, 200)
    assert clock.seconds(start, clock.mark()) > 0
