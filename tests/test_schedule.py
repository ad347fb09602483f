import pytest

from lab.recipe.config import DAWNBENCH_LR_KNOTS
from lab.recipe.schedule import PiecewiseLinear


def test_dawnbench_schedule_with_kink():
    s = PiecewiseLinear(DAWNBENCH_LR_KNOTS)
    assert s(0) == 0.0
    assert s(7.5) == pytest.approx(0.05)
    assert s(14.999) == pytest.approx(0.1, rel=1e-3)
    assert s(15) == pytest.approx(0.105)  # a repeated epoch is a jump: the later value holds
    assert s(22.5) == pytest.approx((0.105 + 0.005) / 2)
    assert s(30) == pytest.approx(0.005)
    assert s(35) == 0.0 and s(40) == 0.0


def test_without_jumps_removes_the_kink():
    smooth = PiecewiseLinear(DAWNBENCH_LR_KNOTS).without_jumps()
    assert smooth.knots == ((0, 0), (15, 0.1), (30, 0.005), (35, 0))
    assert smooth(15) == pytest.approx(0.1)


def test_scaled_to_fewer_epochs_keeps_proportions():
    scaled = PiecewiseLinear(DAWNBENCH_LR_KNOTS).scaled_to(7)
    assert [k[0] for k in scaled.knots] == pytest.approx([0, 3, 3, 6, 7])
    assert [k[1] for k in scaled.knots] == [0, 0.1, 0.105, 0.005, 0]


@pytest.mark.parametrize("knots", [((0, 0),), ((5, 0), (1, 1)), ((-1, 0), (1, 1))])
def test_invalid_knots_rejected(knots):
    with pytest.raises(ValueError):
        PiecewiseLinear(knots)
