"""Chapter 2 (airbench): its mechanisms checked by what they must do, its plan against the
sources' figures, and the chapter model (device, rule, restarts) on the article's facts.

Mechanisms: alternating flips show every image both ways in every two epochs with the flips
drawn once; per-image crops are the documented slices; Lookahead's copy-back leaves the weights
equal to the average; a Muon update is near-orthogonal and the filters keep norm
sqrt(out_channels); the decoupled rates are the source's update; the counters are measured.
"""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import ablations  # noqa: F401  (registers the steps)
from lab.analysis.summary import RULE_PARTS, _article_totals, _timing
from lab.engine.plan import plan_entry
from lab.recipe import article
from lab.recipe.config import Config
from lab.recipe.decoupled import decoupled_rate, kilostep_scale, with_source_run
from lab.recipe.horizons import article_training_steps
from lab.recipe.registry import series_start, series_steps
from lab.recipe.variant import apply_steps, cumulative_variants
from lab.recipe.vocabulary import WHITEN_TRAIN_FINAL_EVAL
from lab.recipe.workload import expected_rng_calls
from lab.render.waterfall import article_bars, article_labels
from lab.train.airbench_data import AirbenchPipeline, crop_per_image
from lab.train.data import Cifar, subset
from lab.train.network import build_network
from lab.train.precision import Placement
from lab.train.rng import CountingRng
from lab.train.trainer import Lookahead, Trainer, _optimizer, muon_filters
from lab.train.update import Muon, orthogonalised
from tests import test_airbench as airbench_network
from tests.conftest import SERIES_SMOKE

# test_airbench's network, wide enough for dirac, on airbench's data path.
AIRBENCH = dataclasses.replace(
    airbench_network.AIRBENCH, width=24, data_path="airbench", drop_last=True, batch_size=8
)


def _crafted(count: int = 16) -> Cifar:
    """Images whose every pixel differs from its mirror's (a horizontal ramp plus an index
    mark), so an orientation can be read back."""
    ramp = np.arange(32, dtype=np.uint8)[None, None, :, None] * 7
    images = np.broadcast_to(ramp, (count, 32, 32, 3)).copy()
    images[:, 0, 0, 0] = np.arange(count, dtype=np.uint8)  # which image it is
    labels = np.arange(count) % 10
    classes = tuple("abcdefghij")
    return Cifar(images, labels, images[:10], labels[:10], classes, "crafted", 0, 0, False)


def _pipeline(config: Config, data: Cifar) -> AirbenchPipeline:
    return AirbenchPipeline(config, data, Placement.from_config(config, torch.device("cpu")))


def test_alternating_flips_show_every_image_both_ways_in_every_two_epochs():
    config = dataclasses.replace(AIRBENCH, flip_mode="alternating", translate=0)
    pipeline = _pipeline(config, _crafted())
    rng = CountingRng(torch.Generator().manual_seed(0))
    epochs, calls = [], []
    for _ in range(4):
        before = rng.calls
        images, _ = pipeline.augmented(rng)
        epochs.append(images)
        calls.append(rng.calls - before)
    mirrored = [e.flip(-1) for e in epochs]
    # In set order: each epoch is the one before it mirrored, image by image.
    for first, second in zip(epochs, epochs[1:], strict=False):
        assert torch.equal(second, first.flip(-1))
    # Over two epochs every image is seen plain once and mirrored once.
    plain = pipeline.train
    for index in range(len(plain)):
        seen = [torch.equal(e[index], plain[index]) for e in epochs[:2]]
        seen_flipped = [torch.equal(m[index], plain[index]) for m in mirrored[:2]]
        assert sorted(seen) == [False, True] and sorted(seen_flipped) == [False, True]
    # The flips are drawn once, in the first epoch; later epochs draw only the permutation.
    assert calls == [2, 1, 1, 1]
    assert sum(calls) == expected_rng_calls(dataclasses.replace(config, epochs=4), 16)


def test_random_flips_draw_every_epoch_and_mix_orientations():
    config = dataclasses.replace(AIRBENCH, translate=0)
    pipeline = _pipeline(config, _crafted(64))
    rng = CountingRng(torch.Generator().manual_seed(0))
    images, order = pipeline.augmented(rng)
    flipped = sum(not torch.equal(a, b) for a, b in zip(images, pipeline.train, strict=True))
    assert 16 < flipped < 48  # about half
    assert sorted(order.tolist()) == list(range(64)) and rng.calls == 2  # flips, permutation
    assert 3 * 2 == expected_rng_calls(dataclasses.replace(config, epochs=3), 64)


def test_each_image_is_cropped_at_its_own_shift():
    padded = torch.arange(5 * 3 * 36 * 36, dtype=torch.float32).view(5, 3, 36, 36)
    shifts = torch.tensor([[-2, -2], [0, 0], [2, 2], [-1, 2], [1, -2]])
    out = crop_per_image(padded, shifts, 32)
    for image, (dy, dx) in enumerate(shifts.tolist()):
        assert torch.equal(out[image], padded[image, :, 2 + dy : 34 + dy, 2 + dx : 34 + dx])


def test_lookahead_copy_back_leaves_the_weights_equal_to_the_average():
    torch.manual_seed(0)
    model = build_network(AIRBENCH)
    lookahead = Lookahead(model)
    assert lookahead.update(0.5) is False  # the first due update only takes the copy
    taken = [t.clone() for t in lookahead.average]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    live = [t.clone() for t in lookahead.live]
    assert lookahead.update(0.25) is True
    for average, before, moved in zip(lookahead.average, taken, live, strict=True):
        assert torch.allclose(average, before + 0.75 * (moved - before))
    floats = [t for t in model.state_dict().values() if t.is_floating_point()]
    assert all(torch.equal(a, w) for a, w in zip(lookahead.average, floats, strict=True))
    with torch.no_grad():
        next(model.parameters()).add_(3.0)
    lookahead.copy_back()  # the per-epoch copy-back
    assert all(torch.equal(a, w) for a, w in zip(lookahead.average, floats, strict=True))


def test_lookahead_updates_are_counted_where_made(real_cifar):
    config = dataclasses.replace(
        AIRBENCH,
        width=8,
        train_images=400,
        test_images=100,
        batch_size=40,
        epochs=3,
        lookahead_every=5,
        lookahead_start_epochs=1,
    )
    data = subset(real_cifar, 400, 100, 0)
    trainer = Trainer(config, data, torch.device("cpu"), 0)
    for epoch in range(3):
        trainer.train_epoch(epoch)
    # 10 steps an epoch; due at run steps 15, 20, 25, 30 (epochs 1-2): the first takes the copy.
    assert trainer.weight_average_updates == 3
    average = trainer.lookahead.average
    floats = [t for t in trainer.model.state_dict().values() if t.is_floating_point()]
    assert all(torch.equal(a, w) for a, w in zip(average, floats, strict=True))


def test_a_muon_update_is_near_orthogonal():
    # A gradient whose singular values span 20x (built from random orthonormal factors).
    torch.manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(64, 64))
    right, _ = torch.linalg.qr(torch.randn(24 * 9, 64))
    gradient = left @ torch.diag(torch.logspace(0, -1.3, 64)) @ right.T
    update = orthogonalised(gradient, steps=3).float()
    singular = torch.linalg.svdvals(update)
    # Three quintic iterations push every singular value near 1, not exactly (the source's
    # docstring: roughly Uniform(0.5, 1.5)): a 20x spread becomes about 2x.
    assert float(singular.min()) > 0.5 and float(singular.max()) < 1.5
    assert float(singular.max() / singular.min()) < 2.5


def test_muon_keeps_each_filter_bank_at_norm_sqrt_out_channels():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(32, 24, 3, 3) * 5)
    muon = Muon([weight], momentum=0.6, ns_steps=3)
    for lr in (0.0, 0.24):
        muon.param_groups[0]["lr"] = lr
        weight.grad = torch.randn_like(weight)
        before = weight.detach().clone()
        muon.step()
        renormalised = before * (32**0.5 / before.norm())
        step = weight.detach() - renormalised
        if lr == 0:
            assert float(weight.detach().norm()) == pytest.approx(32**0.5, rel=1e-5)
        else:  # the step itself is the orthogonalised update x lr
            assert (
                float(step.norm()) > 0
                and float(torch.linalg.svdvals(step.reshape(32, -1) / lr).max()) < 1.5
            )


def test_muon_takes_the_filters_and_sgd_the_rest():
    config = dataclasses.replace(
        AIRBENCH,
        patch_whitening=True,
        optimizer="muon",
        whitening_bias_epochs=3.0,
        whitening_bias_decay=True,
    )
    model = build_network(config)
    filters = muon_filters(model, config)
    assert len(filters) == 6 and all(p.dim() == 4 and p.requires_grad for p in filters)
    sgd = [p for group in _optimizer(model, config).param_groups for p in group["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in sgd} | {id(p) for p in filters} == {id(p) for p in trainable}
    assert not {id(p) for p in sgd} & {id(p) for p in filters}


def test_the_whitening_bias_rate_falls_to_zero_at_its_epochs(real_cifar):
    config = apply_steps(SERIES_SMOKE, series_steps("both"))
    data = subset(real_cifar, config.train_images, config.test_images, config.subset_seed)
    trainer = Trainer(config, data, torch.device("cpu"), 0)
    stem = next(g for g in trainer.optimizer.param_groups if g.get("until_epoch") is not None)
    until = stem["until_epoch"]
    per_epoch = trainer.pipeline.steps_per_epoch
    rates = []
    for fraction in (0.0, 0.5, 1.1, 1.5):
        step = round(fraction * until * per_epoch)
        trainer._set_lr(0, step)
        rates.append(stem["lr"])
    assert rates[0] > rates[1] > 0 and rates[2] == rates[3] == 0
    # Muon's rate follows the schedule's shape at the same step (muon_lr at its peak).
    muon = trainer.muon.param_groups[0]["lr"]
    shape = trainer.schedule(step / per_epoch) / trainer.peak_rate
    expected = config.muon_lr * config.lr_scale * shape
    assert muon == pytest.approx(expected)


def test_decoupled_rates_are_the_sources_update():
    # main0: lr 10 and wd 0.0153 per 1024 examples at momentum 0.85 and batch 1024.
    lr_torch = 10 / kilostep_scale(0.85)
    wd_torch = (0.0153 * 1024 / kilostep_scale(0.85)) / lr_torch
    rate = decoupled_rate(10, 1024, 0.85)
    assert rate / 1024 == pytest.approx(lr_torch)  # the lab's rate per summed example
    assert rate * (0.0153 / 10) == pytest.approx(lr_torch * wd_torch)  # decay per step
    # Cut by batch_scale, the batch and the mean-loss rate shrink together: the same rate per
    # example, the same steps per epoch on a training set cut by the same factor.
    scaled = dataclasses.replace(AIRBENCH, batch_scale=0.1024)
    run = with_source_run(scaled, batch=1024, epochs=34, peak=rate, warmup=0.2, start=0.2, end=0)
    assert (run.batch_size, run.source_batch_size) == (105, 1024)
    assert max(r for _, r in run.lr_knots) / run.batch_size == pytest.approx(rate / 1024)
    # The horizons' source run trains at the written batch: 48 steps an epoch, not 476.
    assert article_training_steps(run) == 48 * 34


def test_the_counters_are_measured(real_cifar):
    data = subset(real_cifar, 200, 100, 0)
    views = {}
    for tta in ("none", "flip", "multicrop"):
        config = dataclasses.replace(AIRBENCH, width=8, tta=tta, compile="max-autotune")
        trainer = Trainer(config, data, torch.device("cpu"), 0)
        trainer.evaluate()
        views[tta] = trainer.views_per_batch
        trainer.warm_up()
        assert not trainer.compiles and trainer.compile_s == 0.0  # a CPU does not compile
    assert views == {"none": 1, "flip": 2, "multicrop": 6}


# ----------------------------------------------------------------------------- the plan


@pytest.fixture(scope="module")
def full_scale_entries():
    base = apply_steps(Config(), series_start("airbench"))
    variants = cumulative_variants(base, series_steps("airbench"))
    return {v.name: plan_entry(v) for v in variants}


def test_the_plan_matches_the_sources_parameters_and_flops(full_scale_entries):
    """1,971,640 trainable parameters (the README's; BatchNorm scales frozen), and every
    step's FLOPs per run on the sources' rule within 3% of its published PFLOPs (the gap:
    their counter also counts BatchNorm, activations and pools, docs/series.md)."""
    assert full_scale_entries["+airbench"]["params"] == 1_971_640
    # Whitened: 288 filter weights frozen, the stem's 24 BatchNorm shifts become 24 biases.
    assert full_scale_entries["+patch_whitening"]["params"] == 1_971_640 - 288
    for step in series_steps("airbench"):
        ours = full_scale_entries[f"+{step.name}"]["source_rule_flops"] / 1e15
        assert ours == pytest.approx(step.article.pflops, rel=0.03), step.name
        assert full_scale_entries[f"+{step.name}"]["epochs"] == step.article.epochs


def test_series_plans_run_the_chapter_and_both_chapters():
    from tests.conftest import call_cli

    chapter = call_cli("--series", "airbench", "--plan", "--preset", "dawnbench")
    assert chapter.returncode == 0, chapter.stderr
    assert "main1_whiten: 8.6 s, 0.76 PFLOPs, 21 epochs on an A100" in chapter.stdout
    assert "airbench94_muon: 2.59 s" in chapter.stdout and "-1.6% of the source's" in chapter.stdout
    assert re.search(r"^\s*baseline\s+resnet9", chapter.stdout, re.M)  # Page's final recipe
    both = call_cli("--series", "both", "--plan", "--preset", "cpu-airbench")
    lines = [line.split()[0] for line in both.stdout.splitlines() if line.startswith("  ")]
    assert lines[0] == "baseline" and "+muon" in lines and "+bn_dedupe" in lines
    assert "resnet18" in both.stdout.splitlines()[1]  # from the DAWNBench baseline


# ----------------------------------------------------------------------------- the chapter model


def _totals(numbers: list[int], start_step: int | None):
    steps = [SimpleNamespace(article=SimpleNamespace(step=n)) for n in numbers]
    return _article_totals(steps, article.series_facts(), start_step)


def test_chapter_2_starts_from_pages_final_recipe_on_an_a100():
    first = article.FIRST_OF_CHAPTER2
    totals = _totals(list(range(first, first + 10)), first - 1)
    assert (totals.device, totals.baseline_s, totals.final_s) == ("A100", 14.9, 2.59)
    bars = article_bars(SimpleNamespace(article=totals), "\n")
    assert bars[0].end == 14.9 and bars[-1].end == 2.59 and len(bars) == 12


def test_both_chapters_restart_on_the_new_device():
    first = article.FIRST_OF_CHAPTER2
    totals = _totals(list(range(1, first + 10)), None)
    assert totals.device == "V100, then A100" and totals.restarts_s == {str(first): 14.9}
    summary = SimpleNamespace(article=totals)
    bars, labels = article_bars(summary, "\n"), article_labels(summary, "\n")
    restart = labels.index("on an A100")
    assert bars[restart - 1].end == 26.0 and bars[restart].end == 14.9  # Page's 26 s, re-timed
    assert bars[restart + 1].start == 14.9 and bars[restart + 1].end == 14.2


def test_the_chapters_rule_adds_the_whitening_training_and_the_final_evaluation():
    assert RULE_PARTS[WHITEN_TRAIN_FINAL_EVAL] == ("whitening_s", "train_s", "final_eval_s")
    measurements = {"epochs": [{"eval_s": 0.5}, {"eval_s": 0.7}], "whitening_s": None}
    assert _timing(measurements, "final_eval_s") == 0.7  # the last epoch's evaluation only
    assert _timing(measurements, "whitening_s") == 0.0  # not measured apart: none
    assert {s.rule for s in article.STEPS if s.chapter == 2} == {WHITEN_TRAIN_FINAL_EVAL}
