"""A straight-line reference for the Part-8 recipe: the lab's last `--series full` variant
written as plainly as its source (Page's `bag_of_tricks` cells), with no lab machinery around
it, so `python -m lab.bench` can time the lab's training step and loop against it.

Nothing here imports `lab`: the network is a list of tensors and a forward function, the update
is Page's Nesterov step written in place on the gradients, the data is the already-preprocessed
tensors, the augmentation is the same group-wise crop and flip. Numerically it is the lab's
recipe: on copied weights and the same batch it gives the same logits, loss and update
(tests/test_bench.py), so a difference in time is the lab's overhead, not a different recipe.

Layout of `weights` (the order of the lab's `state_dict`, checked by `load_state`):
  stem:  whiten (27,3,3,3) frozen, mix (w,27,1,1), bn(w)
  layer1 conv (2w,w,3,3) + bn(2w); res1a, res1b conv (2w,2w,3,3) + bn(2w)
  layer2 conv (4w,2w,3,3) + bn(4w)
  layer3 conv (8w,4w,3,3) + bn(8w); res3a, res3b conv (8w,8w,3,3) + bn(8w)
  linear (10, 8w)
where every bn is (scale, shift, running mean, running var, batches tracked), its running
statistics `splits` x as long (ghost BatchNorm).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

CONV_NAMES = ("layer1", "res1a", "res1b", "layer2", "layer3", "res3a", "res3b")
POOLED = {"layer1", "layer2", "layer3"}  # conv -> 2x2 max-pool -> BN -> CELU


@dataclass(frozen=True)
class Recipe:
    """The hyperparameters the reference needs, as plain numbers (the bench fills them from
    the lab's config; nothing here reads it)."""

    batch_size: int  # training images per step
    splits: int  # ghost BatchNorm groups
    celu_alpha: float
    logit_scale: float
    label_smoothing: float
    momentum: float
    weight_decay: float  # per example (multiplied by the batch size: the loss is summed)
    bias_lr_scale: float
    bias_wd_scale: float
    ema_rho: float
    ema_every: int  # steps between weight-average updates
    lr_knots: tuple[tuple[float, float], ...]  # (epoch, rate) pairs, linear between
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5


class BatchNormState:
    """One ghost BatchNorm: a shared scale and shift, running statistics per group."""

    def __init__(self, tensors: Iterator[torch.Tensor]) -> None:
        self.scale, self.shift, self.mean, self.var, self.tracked = (
            next(tensors) for _ in range(5)
        )


class Net:
    """The ResNet-9 over a list of tensors (the layout above), in training or evaluation."""

    def __init__(self, state: Sequence[torch.Tensor], recipe: Recipe) -> None:
        self.state, self.recipe = list(state), recipe
        tensors = iter(self.state)
        self.whiten, self.mix = next(tensors), next(tensors)
        self.stem_bn = BatchNormState(tensors)
        self.convs = {name: (next(tensors), BatchNormState(tensors)) for name in CONV_NAMES}
        self.linear = next(tensors)
        self.bns = [self.stem_bn, *(bn for _, bn in self.convs.values())]
        self.training = True

    def _bn(self, x: torch.Tensor, bn: BatchNormState) -> torch.Tensor:
        n, c, h, w = x.shape
        r = self.recipe
        if not self.training:
            return F.batch_norm(
                x, bn.mean[:c], bn.var[:c], bn.scale, bn.shift, False, r.bn_momentum, r.bn_eps
            )
        return F.batch_norm(
            x.reshape(n // r.splits, c * r.splits, h, w),
            bn.mean,
            bn.var,
            bn.scale.repeat(r.splits),
            bn.shift.repeat(r.splits),
            True,
            r.bn_momentum,
            r.bn_eps,
        ).view(n, c, h, w)

    def _block(self, x: torch.Tensor, name: str) -> torch.Tensor:
        conv, bn = self.convs[name]
        x = F.conv2d(x, conv, padding=1)
        if name in POOLED:
            x = F.max_pool2d(x, 2)
        return F.celu(self._bn(x, bn), alpha=self.recipe.celu_alpha)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.conv2d(x, self.whiten, padding=1), self.mix)
        x = F.celu(self._bn(x, self.stem_bn), alpha=self.recipe.celu_alpha)
        x = self._block(x, "layer1")
        x = x + self._block(self._block(x, "res1a"), "res1b")
        x = self._block(x, "layer2")
        x = self._block(x, "layer3")
        x = x + self._block(self._block(x, "res3a"), "res3b")
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return (x @ self.linear.T) * self.recipe.logit_scale

    def evaluation(self) -> None:
        """Switch to evaluation: each ghost BatchNorm's group statistics averaged, once."""
        if self.training:
            splits = self.recipe.splits
            with torch.no_grad():
                for bn in self.bns:
                    for stats in (bn.mean, bn.var):
                        stats.copy_(stats.view(splits, -1).mean(dim=0).repeat(splits))
        self.training = False


class Reference:
    """The live network, its optimiser state and its weight average."""

    def __init__(self, state: Sequence[torch.Tensor], recipe: Recipe) -> None:
        self.recipe = recipe
        self.live = Net([t.detach().clone() for t in state], recipe)
        self.average = Net([t.clone() for t in self.live.state], recipe)
        # Trained: every conv but the frozen whitening, the linear layer and the BN shifts
        # (the BN scales stay at 1); the shifts are the "bias" group.
        live = self.live
        self.weights = [live.mix, *(conv for conv, _ in live.convs.values()), live.linear]
        self.biases = [bn.shift for bn in live.bns]
        for tensor in self.weights + self.biases:
            tensor.requires_grad_(True)
        self.velocity = [torch.zeros_like(p) for p in self.weights + self.biases]
        self.pairs = [
            (average, tensor)
            for average, tensor in zip(self.average.state, live.state, strict=True)
            if tensor.is_floating_point()
        ]

    def rate(self, epoch: float) -> float:
        """The schedule's rate at a (fractional) epoch, linear between the knots."""
        knots = np.array(self.recipe.lr_knots)
        return float(np.interp(epoch, knots[:, 0], knots[:, 1]))

    def step_rate(self, epoch_index: int, step: int, steps_per_epoch: int) -> float:
        """Page's update reads the rate one step on (his step counter is incremented first)."""
        return self.rate(epoch_index + (step + 1) / steps_per_epoch)

    def step(
        self, images: torch.Tensor, labels: torch.Tensor, rate: float, index: int
    ) -> torch.Tensor:
        """Step `index` of a pass at `rate` (per example): the summed loss, Page's Nesterov
        update in place on the gradients, the weight average every `ema_every` steps.
        Returns the loss as a 0-d tensor (read it later: reading it here would sync)."""
        r = self.recipe
        logits = self.live(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=r.label_smoothing, reduction="sum")
        for tensor in self.weights + self.biases:
            tensor.grad = None
        loss.backward()
        lr, decay = rate / r.batch_size, r.weight_decay * r.batch_size
        groups = (
            (self.weights, lr, decay),
            (self.biases, lr * r.bias_lr_scale, decay * r.bias_wd_scale),
        )
        velocities = iter(self.velocity)
        with torch.no_grad():
            for tensors, group_lr, group_decay in groups:
                for weight in tensors:
                    velocity = next(velocities)
                    delta = weight.grad.add_(weight, alpha=group_decay).mul_(-group_lr)
                    velocity.mul_(r.momentum).add_(delta)
                    weight.add_(delta.add_(velocity, alpha=r.momentum))
            if index % r.ema_every == 0:
                for average, tensor in self.pairs:
                    average.mul_(r.ema_rho).add_(tensor, alpha=1 - r.ema_rho)
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
        """Accuracy of the weight average with flip TTA."""
        self.average.evaluation()
        correct = torch.zeros((), dtype=torch.int64, device=images.device)
        for start in range(0, len(labels), batch_size):
            batch = images[start : start + batch_size]
            logits = (self.average(batch) + self.average(batch.flip(3))) / 2
            correct += (logits.argmax(dim=1) == labels[start : start + batch_size]).sum()
        return int(correct) / len(labels)


def augmented_epoch(
    padded: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, max_options: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Page's group-wise augmentation of a 40x40 padded set: permute, split into as many
    groups as options kept, one crop per group; the same for flips; a final permutation."""
    size = len(labels)
    data = padded
    options_of = (
        [("crop", (top, left)) for top in range(9) for left in range(9)],
        [("flip", (0,)), ("flip", (1,))],
    )
    for options in options_of:
        order = torch.randperm(size, generator=generator, device=padded.device)
        data, labels = data[order], labels[order]
        kept = torch.randperm(len(options), generator=generator, device=padded.device)
        kept = [options[i] for i in kept[:max_options].tolist()]
        bounds = [round(size * k / len(kept)) for k in range(len(kept) + 1)]
        pieces = []
        for (kind, option), start, end in zip(kept, bounds, bounds[1:], strict=False):
            if end <= start:
                continue
            group = data[start:end]
            if kind == "crop":
                top, left = option
                group = group[:, :, top : top + 32, left : left + 32]
            elif option[0]:
                group = group.flip(3)
            pieces.append(group)
        data = torch.cat(pieces)
    order = torch.randperm(size, generator=generator, device=padded.device)
    return data[order], labels[order]


def batches(
    data: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Full training batches in order (the short last one dropped)."""
    for start in range(0, len(labels) - batch_size + 1, batch_size):
        yield data[start : start + batch_size], labels[start : start + batch_size]
