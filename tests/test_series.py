"""Parts 2-8 of the series: the networks, the layer options, the device-side pipeline, the
trainer's options, and the steps' configs at the article's scale (docs/article.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lab.errors import LabError
from lab.recipe.config import Config, apply_overrides
from lab.recipe.presets import get_preset
from lab.recipe.registry import all_steps, get_steps, series_steps
from lab.recipe.variant import apply_steps
from lab.recipe.workload import device_rng_calls_per_epoch as rng_calls_per_epoch
from lab.recipe.workload import steps_per_pass
from lab.train.data import Cifar
from lab.train.device_data import DevicePipeline, even_splits, transforms
from lab.train.network import GhostBatchNorm, build_network, count_parameters, flops_per_image
from lab.train.precision import Placement
from lab.train.rng import CountingRng
from lab.train.trainer import WeightAverage, whitening_filters
from tests.conftest import SERIES_SMOKE


def article_config(last_step: str) -> Config:
    """The dawnbench preset with every step up to `last_step` applied."""
    names = [s.name for s in all_steps()]
    steps = get_steps(names[: names.index(last_step) + 1])
    return apply_steps(get_preset("dawnbench").config, steps)


# ----------------------------------------------------------------------------- networks


def test_resnet9_and_final_network_parameter_counts_match_spec():
    resnet9 = build_network(article_config("resnet9"))
    assert count_parameters(resnet9) == 6_573_120
    final = build_network(article_config("tta"))
    assert count_parameters(final) == 6_570_880  # trainable: whitening and BN scales frozen
    assert sum(p.numel() for p in final.parameters()) == 6_573_849  # 729 + 2,240 frozen


def test_flops_per_image_of_each_network():
    # Forward multiply-accumulates of the ResNet-9 (docs/article.md's layers), counted by hand:
    # prep 3->64 at 32x32, then five 75.5M-MAC convolutions, and the linear layer.
    macs = 27 * 64 * 32 * 32 + 5 * (64 * 128 * 9 * 32 * 32) + 512 * 10
    first_layer_input_grad = 27 * 64 * 32 * 32  # autograd skips the image's own gradient
    resnet9 = flops_per_image(article_config("resnet9"))
    assert resnet9 == 2 * (3 * macs - first_layer_input_grad) == 2_272_032_768
    assert flops_per_image(article_config("main_thread_aug")) == 2_756_474_880
    # The whitening stem: a 3x3 conv 3->27 (frozen: no weight gradient) and a 1x1 conv 27->64.
    assert flops_per_image(article_config("tta")) == 2_273_525_760


def test_layer_order_moves_the_pool_before_batchnorm():
    before = build_network(article_config("gpu_augmentation"))
    after = build_network(article_config("layer_order"))
    kinds = [type(m) for m in before[1]]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert [type(m) for m in after[1]] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    assert flops_per_image(article_config("layer_order")) == flops_per_image(
        article_config("gpu_augmentation")
    )


def test_final_network_options():
    model = build_network(article_config("tta"))
    celus = [m for m in model.modules() if isinstance(m, nn.CELU)]
    assert celus and all(m.alpha == 0.3 for m in celus)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, GhostBatchNorm) and m.splits == 16 for m in bns)
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in bns)
    assert model[-1].factor == 1 / 16
    whiten = model[0][0]
    assert whiten.weight.shape == (27, 3, 3, 3) and not whiten.weight.requires_grad


def test_ghost_batchnorm_normalises_interleaved_groups_and_averages_once():
    torch.manual_seed(0)
    bn = GhostBatchNorm(3, splits=4)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    out = bn(x)
    for group in range(4):
        members = x[group::4]  # example n is in group n mod splits
        mean = members.mean(dim=(0, 2, 3), keepdim=True)
        var = members.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        expected = (members - mean) / torch.sqrt(var + bn.eps)
        assert torch.allclose(out[group::4], expected, atol=1e-5)
    per_group = bn.running_mean.view(4, 3).clone()
    bn.eval()
    assert torch.allclose(bn.running_mean[:3], per_group.mean(dim=0))
    bn.eval()  # eval -> eval: no second averaging
    assert torch.allclose(bn.running_mean.view(4, 3), per_group.mean(dim=0).expand(4, 3))


def test_whitening_filters_whiten_real_patches(real_cifar):
    from lab.train.device_data import normalise

    images = normalise(real_cifar.train_images[:500], torch.device("cpu"), torch.float32)
    eps = 1e-2
    filters = whitening_filters(images, eps)
    out = F.conv2d(images, filters)  # every 3x3 window, as the covariance saw them
    flat = out.permute(1, 0, 2, 3).reshape(27, -1)
    covariance = flat @ flat.T / (flat.shape[1] - 1)
    patches = F.unfold(images, 3).transpose(1, 2).reshape(-1, 27)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / (len(patches) - 1)).flip(0)
    # Whitened: uncorrelated, each variance lambda / (lambda + eps), in descending order.
    assert torch.allclose(covariance.diagonal(), eigenvalues / (eigenvalues + eps), atol=1e-3)
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() < 3e-3  # fp32 rounding in the smallest directions


# ----------------------------------------------------------------------------- trainer parts


def test_the_trainers_loss_with_label_smoothing_is_the_sources_blend():
    """The loss the trainer minimises: (1 - a) cross-entropy + a mean_k(-log softmax_k), the
    source's form, with `a` = `label_smoothing`; plain cross-entropy at 0. Summed over the
    batch and scaled to a whole one (Page's summed loss): `batch_size` x the mean."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from lab.train.trainer import Trainer

    torch.manual_seed(0)
    logits, labels = torch.randn(6, 10), torch.randint(0, 10, (6,))
    nll = -F.log_softmax(logits, 1)
    cross_entropy = nll[torch.arange(6), labels].mean()

    def loss(smoothing: float) -> torch.Tensor:
        trainer = SimpleNamespace(
            model=lambda images: logits,
            config=Config(label_smoothing=smoothing),
            placement=SimpleNamespace(autocast=nullcontext),
        )
        return Trainer._loss(trainer, torch.zeros(6, 3, 32, 32), labels)

    batch = Config().batch_size
    assert torch.allclose(loss(0.2) / batch, 0.8 * cross_entropy + 0.2 * nll.mean())
    assert torch.allclose(loss(0.0) / batch, cross_entropy)


def test_weight_average_follows_every_float_entry_and_skips_counters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = WeightAverage(model, rho=0.5)
    start = {k: v.clone() for k, v in ema.model.state_dict().items()}
    model(torch.randn(4, 3, 6, 6))  # moves BN running stats and its batch counter
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update()
    live, averaged = model.state_dict(), ema.model.state_dict()
    for key, value in averaged.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.5 * start[key] + 0.5 * live[key]), key
    assert averaged["1.num_batches_tracked"] == 0 and live["1.num_batches_tracked"] == 1


# ----------------------------------------------------------------------------- device data


def test_even_splits_cover_the_set_with_near_equal_groups():
    groups = even_splits(1000, 81)
    assert groups[0][0] == 0 and groups[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(groups, groups[1:], strict=False))
    assert {end - start for start, end in groups} <= {12, 13}


def coded_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A crafted set: channel 0 holds the image's index, channel 1 its column, channel 2 its
    row, so an augmented image tells which image, crop offset and flip it came from."""
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[..., 0] = np.arange(n).reshape(n, 1, 1)
    images[..., 1] = np.arange(32).reshape(1, 1, 32) * 7
    images[..., 2] = np.arange(32).reshape(1, 32, 1) * 7
    return images, np.arange(n) % 10


def raw_pixels(batch: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: the uint8 values the images were made of."""
    from lab.recipe.workload import CIFAR_MEAN, CIFAR_STD

    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1) * 255
    return (batch * std + mean).round()


def augmented(config: Config, n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    images, labels = coded_images(n)
    dataset = Cifar(
        images,
        labels,
        images[:10],
        labels[:10],
        classes=tuple("0123456789"),
        source="coded",
        decode_s=0.0,
        load_s=0.0,
        cache_hit=False,
    )
    pipeline = DevicePipeline(config, dataset, Placement.from_config(config, torch.device("cpu")))
    data, shuffled = pipeline.augmented(CountingRng(torch.Generator().manual_seed(0)))
    return data, shuffled, labels


def test_device_augmentation_crops_flips_in_groups_and_keeps_labels():
    config = Config(data_path="device", drop_last=True, batch_size=64, augment_max_options=50)
    data, labels, originals = augmented(config, 200)
    raw = raw_pixels(data)
    index = raw[:, 0].flatten(1).median(dim=1).values.long()
    assert sorted(index.tolist()) == list(range(200))  # a permutation of the whole set
    assert torch.equal(labels, torch.from_numpy(originals[index.numpy()]))
    flipped = raw[:, 1, 0, 5] < raw[:, 1, 0, 4]  # columns run backwards
    # Crop column 4 is padded column left + 4, the original column `left` (27 when flipped).
    left = torch.where(flipped, raw[:, 1, 0, 27], raw[:, 1, 0, 4]) / 7
    top = raw[:, 2, 4, 0] / 7
    offsets = set(zip(top.long().tolist(), left.long().tolist(), strict=True))
    assert offsets <= {(t, c) for t in range(9) for c in range(9)}
    assert 1 < len(offsets) <= 50  # at most augment_max_options crop choices per epoch
    assert 0 < int(flipped.sum()) < 200


def test_device_cutout_zeroes_one_square_per_image():
    config = Config(data_path="device", drop_last=True, batch_size=64, cutout=8)
    data, _, _ = augmented(config, 200)
    zeroed = (data == 0).all(dim=1)  # the coded pixels never normalise to exactly 0
    assert (zeroed.flatten(1).sum(dim=1) == 64).all()
    assert [name for name, _, _ in transforms(config)] == ["crop", "flip", "cutout"]
    assert rng_calls_per_epoch(config) == 7


# ----------------------------------------------------------------------------- configs


def test_fractional_epochs_cut_the_last_pass():
    config = Config(epochs=1.5, batch_size=100, drop_last=False)
    assert steps_per_pass(config, 1050) == [11, 6]
    assert steps_per_pass(dataclasses.replace(config, drop_last=True), 1050) == [10, 5]
    assert steps_per_pass(Config(epochs=0.01, batch_size=100), 1000) == [1]


def test_steps_scale_their_epochs_with_the_preset():
    cpu = get_preset("cpu-series").config
    cut = get_steps(["cutout"])[0].apply(cpu)
    assert cut.epochs == pytest.approx(30 / 35)
    assert cut.lr_knots[1] == pytest.approx((8 / 35, 0.4))
    doubled = apply_overrides(cpu, ["epochs=2"])
    assert get_steps(["cutout"])[0].apply(doubled).epochs == pytest.approx(60 / 35)


def test_the_series_ends_where_the_article_does():
    final = apply_steps(get_preset("dawnbench").config, series_steps("full"))
    assert (final.architecture, final.batch_size, final.epochs) == ("resnet9", 512, 10)
    assert final.lr_knots == ((0, 0), (2, 1.0), (8, 0.1))
    assert (final.bias_lr_scale, final.bias_wd_scale, final.bn_splits) == (64, 1 / 64, 16)
    assert final.ema_rho == pytest.approx(0.99**5) and final.tta == "flip" and final.cutout == 0
    assert [s.name for s in series_steps("part1")] == [s.name for s in all_steps()][:6]


def test_ghost_batchnorm_needs_whole_groups():
    with pytest.raises(LabError, match="bn_splits=16"):
        Config(bn_splits=16, batch_size=100, drop_last=True)
    with pytest.raises(LabError, match="drop_last"):
        Config(bn_splits=16, batch_size=128)


# ----------------------------------------------------------------------------- end to end


def test_profiled_pass_of_the_final_network_spans_short_passes(real_cifar, tmp_path):
    """At a small scale a pass of the device pipeline holds 2 batches of 512; a profiled pass
    needs 2K+2 steps and goes on into the next pass, as training does."""
    from lab.profiling.passes import profile_in_subprocess
    from lab.recipe.variant import cumulative_variants
    from lab.train.data import subset

    base = SERIES_SMOKE
    final = cumulative_variants(base, series_steps("full"))[-1]
    data = subset(real_cifar, base.train_images, base.test_images, base.subset_seed)
    profile = profile_in_subprocess(final, data, torch.device("cpu"), 0, tmp_path / "run")
    assert profile["recorded_steps"] == 1
    assert profile["breakdown"]["train_steps"] == 1
    assert (tmp_path / "run" / profile["trace"]).exists()


@pytest.mark.slow
def test_smoke_series_full_trains_and_reports_every_step(tmp_path, real_data_path):
    from tests.conftest import SERIES_STEP_NAMES, STEP_NAMES, read_jsonl, run_lab

    out = tmp_path / "series"
    result = run_lab(
        "--series",
        "full",
        "--preset",
        "smoke",
        "--set",
        "train_images=1100",
        "--rounds",
        "1",
        "--no-warmup",
        "--no-control",
        "--no-profile",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out / "results.jsonl")
    assert {r["variant"] for r in records} == {
        "baseline",
        *(f"+{n}" for n in STEP_NAMES + SERIES_STEP_NAMES),
    }
    assert all(r["measurements"]["train_steps"] == r["expected"]["train_steps"] for r in records)
    report = (out / "report.md").read_text()
    assert "Against the article, on its own timing rule" in report
    assert "∅ fp32_batchnorm: no effect expected on this device" in report
