"""A straight-line reference for Part 1's final recipe: the lab's last `--series part1` variant
(the DAWNBench pre-activation ResNet-18 without the duplicated BN-ReLU, the smooth schedule, the
set preprocessed once, crops and flips drawn in bulk per epoch, a DataLoader with no workers)
written as plainly as its source, so `python -m lab.bench --recipe part1` can time the lab's
training step and loop against it.

Nothing here imports `lab`: the network is a list of tensors and a forward function, the update
is `torch.optim.SGD` (Nesterov, weight decay in the summed-loss form of the source), the data is
a `Dataset` that slices the padded set at the epoch's pre-drawn offsets. On copied weights, the
same seeds and the same batches it gives the same logits, loss, update, epoch and accuracy as
the lab (tests/test_bench.py), so a difference in time is the lab's overhead.

Layout of `weights` (the order of the lab's `state_dict`, checked by the test):
  prep conv (w,3,3,3)
  8 blocks, each: bn1 (5 tensors), conv1, bn2 (5), conv2, [shortcut 1x1 conv where the block
  changes width or stride]
  linear weight (10, 2 x 4w), linear bias (10)
where every bn is (scale, shift, running mean, running var, batches tracked).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

CROP, PAD = 32, 4
# (stride, projected shortcut) of the 8 pre-activation blocks, stages of w, 2w, 4w, 4w: each
# stage after the first opens with a stride-2 block whose shortcut is a 1x1 projection.
BLOCKS = tuple((stride, stride == 2) for stride in (1, 1, 2, 1, 2, 1, 2, 1))


@dataclass(frozen=True)
class Part1Recipe:
    """The hyperparameters the reference needs, as plain numbers (the bench fills them from
    the lab's config; nothing here reads it)."""

    batch_size: int  # training images per step
    momentum: float
    weight_decay: float  # per example (multiplied by the batch size: the loss is summed)
    lr_knots: tuple[tuple[float, float], ...]  # (epoch, rate) pairs, linear between
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5


class Block:
    """One pre-activation block's tensors: relu(bn1(x)) -> conv1 -> relu(bn2) -> conv2 + shortcut,
    the shortcut projected from the activated input, as the original."""

    def __init__(self, tensors: Iterator[torch.Tensor], stride: int, projected: bool) -> None:
        self.bn1 = [next(tensors) for _ in range(5)]
        self.conv1 = next(tensors)
        self.bn2 = [next(tensors) for _ in range(5)]
        self.conv2 = next(tensors)
        self.shortcut = next(tensors) if projected else None
        self.stride = stride


class Part1Net:
    """The ResNet-18 over a list of tensors (the layout above)."""

    def __init__(self, state: Sequence[torch.Tensor], recipe: Part1Recipe) -> None:
        self.state, self.recipe = list(state), recipe
        tensors = iter(self.state)
        self.prep = next(tensors)
        self.blocks = [Block(tensors, stride, projected) for stride, projected in BLOCKS]
        self.linear_weight, self.linear_bias = next(tensors), next(tensors)
        self.training = True

    def _bn_relu(self, x: torch.Tensor, bn: list[torch.Tensor]) -> torch.Tensor:
        scale, shift, mean, var, _ = bn
        r = self.recipe
        return F.relu(
            F.batch_norm(x, mean, var, scale, shift, self.training, r.bn_momentum, r.bn_eps)
        )

    def _block(self, x: torch.Tensor, block: Block) -> torch.Tensor:
        a = self._bn_relu(x, block.bn1)
        shortcut = x if block.shortcut is None else F.conv2d(a, block.shortcut, stride=block.stride)
        out = F.conv2d(a, block.conv1, stride=block.stride, padding=1)
        return F.conv2d(self._bn_relu(out, block.bn2), block.conv2, padding=1) + shortcut

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.prep, padding=1)
        for block in self.blocks:
            x = self._block(x, block)
        pooled = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)
        return F.linear(pooled.flatten(1), self.linear_weight, self.linear_bias)

    def parameters(self) -> list[torch.Tensor]:
        """The trained tensors: every conv, BN scale and shift, the linear layer."""
        found = [self.prep]
        for block in self.blocks:
            found += [*block.bn1[:2], block.conv1, *block.bn2[:2], block.conv2]
            found += [block.shortcut] if block.shortcut is not None else []
        return [*found, self.linear_weight, self.linear_bias]


class Part1Reference:
    """The network and its optimiser, the source's single parameter group."""

    def __init__(self, state: Sequence[torch.Tensor], recipe: Part1Recipe) -> None:
        self.recipe = recipe
        self.net = Part1Net([t.detach().clone() for t in state], recipe)
        trained = self.net.parameters()
        for tensor in trained:
            tensor.requires_grad_(True)
        self.optimizer = torch.optim.SGD(
            trained,
            lr=0.0,
            momentum=recipe.momentum,
            nesterov=True,
            weight_decay=recipe.weight_decay * recipe.batch_size,
        )

    def rate(self, epoch: float) -> float:
        """The schedule's rate at a (fractional) epoch, linear between the knots."""
        knots = np.array(self.recipe.lr_knots)
        return float(np.interp(epoch, knots[:, 0], knots[:, 1]))

    def step_rate(self, epoch_index: int, step: int, steps_per_epoch: int) -> float:
        """torch.optim.SGD's step reads the rate at its own position (the first step's is 0)."""
        return self.rate(epoch_index + step / steps_per_epoch)

    def step(
        self, images: torch.Tensor, labels: torch.Tensor, rate: float, index: int
    ) -> torch.Tensor:
        """One step at `rate` (per example): the summed loss scaled to a whole batch, SGD.
        Returns the loss as a 0-d tensor (read it later: reading it here would sync)."""
        batch = self.recipe.batch_size
        self.net.training = True
        loss = F.cross_entropy(self.net(images), labels, reduction="sum") * (batch / len(labels))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.param_groups[0]["lr"] = rate / batch
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, loader: DataLoader, epoch_index: int) -> float:
        """One pass over `loader` (a `train_loader`); the mean loss per example."""
        loader.dataset.new_epoch()  # type: ignore[attr-defined]
        losses, seen = torch.zeros(()), 0
        for step, (images, labels) in enumerate(loader):
            rate = self.step_rate(epoch_index, step, len(loader))
            losses += self.step(images, labels, rate, step) * (len(labels) / self.recipe.batch_size)
            seen += len(labels)
        return float(losses) / seen

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> float:
        """Test accuracy over an `evaluation_loader`."""
        self.net.training = False
        correct = torch.zeros((), dtype=torch.int64)
        for images, labels in loader:
            correct += (self.net(images).argmax(dim=1) == labels).sum()
        return int(correct) / len(loader.dataset)  # type: ignore[arg-type]


def preprocess(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], pad: int
) -> np.ndarray:
    """Whole-set normalise (means and deviations in [0, 1] units), reflect-pad, to NCHW."""
    normalised = (images.astype(np.float32) - np.float32(255) * np.asarray(mean, np.float32)) / (
        np.float32(255) * np.asarray(std, np.float32)
    )
    if pad:
        normalised = np.pad(normalised, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


class CropFlipSet(Dataset):
    """The padded set; each epoch draws every crop offset and flip in three calls, and each
    sample is a numpy slice of its padded image (cifar10-fast's `Crop`/`FlipLR` with
    `set_random_choices`)."""

    def __init__(self, padded: np.ndarray, labels: np.ndarray, generator: torch.Generator):
        self.padded, self.labels, self.generator = padded, labels, generator
        self.tops = self.lefts = self.flips = np.zeros(0)

    def new_epoch(self) -> None:
        size, g = len(self.labels), self.generator
        self.tops = torch.randint(2 * PAD + 1, (size,), generator=g).numpy()
        self.lefts = torch.randint(2 * PAD + 1, (size,), generator=g).numpy()
        self.flips = (torch.rand((size,), generator=g) < 0.5).numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        top, left = int(self.tops[index]), int(self.lefts[index])
        crop = self.padded[index, :, top : top + CROP, left : left + CROP]
        if self.flips[index]:
            crop = crop[:, :, ::-1]
        return torch.from_numpy(np.array(crop)), int(self.labels[index])


class PreparedSet(Dataset):
    """The normalised test set, one sample per index."""

    def __init__(self, prepared: np.ndarray, labels: np.ndarray) -> None:
        self.prepared, self.labels = prepared, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.prepared[index]), int(self.labels[index])


def train_loader(
    padded: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed: int, choice_seed: int
) -> DataLoader:
    """Shuffled batches, no worker processes, the last short batch kept."""
    dataset = CropFlipSet(padded, labels, torch.Generator().manual_seed(choice_seed))
    generator = torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def evaluation_loader(prepared: np.ndarray, labels: np.ndarray, batch_size: int) -> DataLoader:
    return DataLoader(PreparedSet(prepared, labels), batch_size=batch_size)
