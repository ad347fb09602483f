"""Piecewise-linear schedules as a value type (after davidcpage/cifar10-fast).

Knots are `(epoch, value)` pairs with non-decreasing epochs. Two knots at the same epoch make a
jump: the schedule takes the later value from that epoch on (it is right-continuous). That is
how the DAWNBench "kink" (0.1 -> 0.105 at epoch 15) is written.
"""

from __future__ import annotations

from dataclasses import dataclass

Knot = tuple[float, float]


@dataclass(frozen=True)
class PiecewiseLinear:
    knots: tuple[Knot, ...]

    def __post_init__(self) -> None:
        knots = tuple((float(epoch), float(value)) for epoch, value in self.knots)
        object.__setattr__(self, "knots", knots)
        if len(knots) < 2:
            raise ValueError(f"a schedule needs at least two knots, got {len(knots)}")
        epochs = [epoch for epoch, _ in knots]
        if any(later < earlier for earlier, later in zip(epochs, epochs[1:], strict=False)):
            raise ValueError(f"knot epochs must not decrease: {epochs}")
        if epochs[0] < 0:
            raise ValueError(f"knot epochs must be >= 0, got {epochs[0]}")

    def __call__(self, epoch: float) -> float:
        """Value at fractional epoch `epoch`; clamped to the end values outside the knots."""
        last_at_or_before = None
        for index, (knot_epoch, _) in enumerate(self.knots):
            if knot_epoch <= epoch:
                last_at_or_before = index
        if last_at_or_before is None:
            return self.knots[0][1]
        if last_at_or_before == len(self.knots) - 1:
            return self.knots[-1][1]
        (x0, y0), (x1, y1) = self.knots[last_at_or_before], self.knots[last_at_or_before + 1]
        return y0 + (y1 - y0) * (epoch - x0) / (x1 - x0)

    @property
    def end(self) -> float:
        """Epoch of the last knot."""
        return self.knots[-1][0]

    def scaled_to(self, epochs: float) -> PiecewiseLinear:
        """The same shape stretched so that the last knot falls at `epochs`."""
        factor = epochs / self.end
        return PiecewiseLinear(tuple((epoch * factor, value) for epoch, value in self.knots))

    def without_jumps(self) -> PiecewiseLinear:
        """Drop the second knot of every jump, so the schedule is continuous."""
        kept = [self.knots[0]]
        for knot in self.knots[1:]:
            if knot[0] != kept[-1][0]:
                kept.append(knot)
        return PiecewiseLinear(tuple(kept))

    def as_lists(self) -> list[list[float]]:
        """JSON-friendly `[[epoch, value], ...]`."""
        return [[epoch, value] for epoch, value in self.knots]
