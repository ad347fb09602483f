"""Page's Nesterov update (`sgd_update="page"`), beside `torch.optim.SGD`'s (`"torch"`).

Both take the step -lr (g + wd w) with Nesterov momentum mu, and they agree while the rate is
constant. They differ when it changes: torch's velocity sums raw gradients, b <- mu b + g', and
multiplies the whole of it by the *current* rate, w <- w - lr (g' + mu b), so a falling rate
also shrinks every past gradient's remaining push. Page's (cifar10-fast `nesterov_update`,
used by the Part 8 code) keeps each gradient's own rate inside the velocity:

    dw = -lr (g + wd w);  v <- mu v + dw;  w <- w + dw + mu v

Over a warm-up (rates rising from 0) torch's form moves the weights further per late step and
Page's further per early one; at the article's 97 steps per epoch the two travel within 0.1%
of each other over a run, at the CPU presets' few steps per epoch ~9% apart (docs/series.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class PageNesterov(torch.optim.Optimizer):
    """SGD whose velocity holds rate-scaled steps (Page's `nesterov_update`); param groups take
    `lr`, `momentum` and `weight_decay` as `torch.optim.SGD`'s do."""

    def __init__(self, params: Iterable[Any], momentum: float, nesterov: bool = True) -> None:
        super().__init__(
            params, {"lr": 0.0, "momentum": momentum, "weight_decay": 0.0, "nesterov": nesterov}
        )

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # noqa: ARG002 - the Optimizer signature
        for group in self.param_groups:
            lr, mu, decay = group["lr"], group["momentum"], group["weight_decay"]
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                delta = weight.grad.add(weight, alpha=decay).mul_(-lr)
                state = self.state[weight]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(weight)
                velocity = state["velocity"]
                velocity.mul_(mu).add_(delta)
                if group["nesterov"]:
                    weight.add_(delta.add_(velocity, alpha=mu))
                else:
                    weight.add_(velocity)


# The quintic Newton-Schulz coefficients of airbench94_muon (chosen there for the largest slope
# at zero, so 3 iterations push every singular value into roughly [0.5, 1.5], not exactly 1).
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalised(matrix: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """An approximate U V^T of `matrix` (2-d) by `steps` quintic Newton-Schulz iterations in
    bfloat16, as airbench94_muon computes it: scaled so the top singular value is <= 1, wide
    side last (X X^T is then the smaller product)."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.bfloat16()
    x = x / (x.norm() + eps)
    tall = matrix.size(0) > matrix.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """airbench94_muon's optimiser for conv filters: Nesterov momentum on the raw gradient
    (b <- mu b + g, then g + mu b), each filter bank renormalised to norm sqrt(out_channels)
    before the step, and the step the orthogonalised update times the group's `lr`. No weight
    decay: the renormalisation holds the scale."""

    def __init__(self, params: Iterable[Any], momentum: float, ns_steps: int) -> None:
        super().__init__(params, {"lr": 0.0, "momentum": momentum, "ns_steps": ns_steps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # noqa: ARG002 - the Optimizer signature
        for group in self.param_groups:
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                state = self.state[weight]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(weight.grad)
                buffer = state["momentum"]
                buffer.mul_(group["momentum"]).add_(weight.grad)
                direction = weight.grad.add(buffer, alpha=group["momentum"])
                weight.mul_(len(weight) ** 0.5 / weight.norm())
                flat = direction.reshape(len(direction), -1)
                update = orthogonalised(flat, group["ns_steps"]).view(weight.shape)
                weight.add_(update.to(weight.dtype), alpha=-group["lr"])
