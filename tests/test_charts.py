"""The charts say what the tables say, read from the figures' artists before they are saved:
the waterfall's labels carry the table's sign, a step whose saving is not significant is grey
and hatched, each variant's floor is a tick over its own bar, the article's panel is in the
article's own seconds; the breakdown is the timed region by phase, A4 wide with no text under
8 pt at 21 variants; the step-phases chart draws each phase's saving on its side of zero, solid
only where significant. Everything renders from the committed examples' summaries."""

from __future__ import annotations

import dataclasses

import matplotlib.colors
import pytest
from matplotlib.collections import LineCollection
from matplotlib.text import Text

from lab import REPO_ROOT
from lab.analysis.stats import SIGNIFICANT
from lab.records import outputs
from lab.records.summary import read_summary
from lab.render import breakdown, phases, waterfall
from lab.render.report import render_report
from lab.render.words import phase_comparisons

EXAMPLE = REPO_ROOT / "reports" / "example-cpu"  # records with phases, 7 steps and a control
SERIES = REPO_ROOT / "reports" / "example-cpu-series"  # 21 steps, no phases, a slowdown


@pytest.fixture(scope="module")
def example():
    return read_summary(EXAMPLE / outputs.SUMMARY)


@pytest.fixture(scope="module")
def series():
    return read_summary(SERIES / outputs.SUMMARY)


def _same_color(a, b) -> bool:
    return matplotlib.colors.to_hex(a) == matplotlib.colors.to_hex(b)


def _close(fig) -> None:
    waterfall.plt.close(fig)


def test_a_bars_label_has_the_tables_sign(example, series):
    for summary in (example, series):
        bars = waterfall.waterfall_bars(summary, " ")
        for step, bar in zip(summary.steps, bars[1:-1], strict=True):
            saved = step.saved_s.estimate
            if saved >= 0:
                assert bar.text.startswith(f"+{saved:.2f} s saved"), bar.text
            else:
                assert bar.text.startswith(f"{-saved:.2f} s slower"), bar.text
            assert bar.text.endswith(f"({step.saved_pct.estimate:+.1f}%)")
            # the report's table prints the same number with the same sign
            assert f"| {saved:+.2f} s [" in render_report(summary) or step.saved_s.ci95 is None
    fig = waterfall.waterfall_figure(example)
    ours = fig.axes[0]
    drawn = [t.get_text() for t in ours.texts]
    bars = waterfall.waterfall_bars(example, "\n")
    assert drawn[: len(bars)] == [bar.text for bar in bars]
    assert not any(text.startswith("-") for text in drawn)  # a slowdown says "slower"
    _close(fig)


@pytest.mark.parametrize("which", ["example", "series"])
def test_a_steps_colour_and_hatch_follow_its_verdict(which, request):
    summary = request.getfixturevalue(which)
    fig = waterfall.waterfall_figure(summary)
    ours = fig.axes[0]
    kinds = set()
    for step, patch in zip(summary.steps, ours.patches[1:], strict=False):
        saved = step.saved_s
        if saved.verdict != SIGNIFICANT:
            kind, color = "not_significant", waterfall.NOT_SIGNIFICANT_COLOR
            assert patch.get_hatch() == waterfall.NOT_SIGNIFICANT_HATCH, step.name
        else:
            kind = "saving" if saved.estimate >= 0 else "slowdown"
            color = waterfall.SAVING if kind == "saving" else waterfall.SLOWDOWN
            assert patch.get_hatch() is None, step.name
        assert _same_color(patch.get_facecolor(), color), step.name
        kinds.add(kind)
    legend = [t.get_text() for t in ours.get_legend().get_texts()]
    for kind in kinds:
        assert waterfall.KINDS[kind][0] in legend
    assert "not_significant" in kinds and "saving" in kinds
    if which == "series":
        assert "slowdown" in kinds  # batch_512's significant slowdown
    _close(fig)


def test_each_variant_has_its_own_floor_tick_and_no_line_crosses_all_bars(series):
    fig = waterfall.waterfall_figure(series)
    ours = fig.axes[0]
    ticks = [c for c in ours.collections if isinstance(c, LineCollection) and c.get_linestyle()]
    segments = [seg for c in ticks for seg in c.get_segments() if seg[0][1] == seg[1][1]]
    chain = series.chain()
    owners = [chain[0], *chain[1:], chain[-1]]
    floors = sorted((round(s[0][0] + 0.42), s[0][1]) for s in segments)
    assert [x for x, _ in floors] == list(range(len(owners)))
    assert [y for _, y in floors] == pytest.approx([v.floor.floor_s for v in owners])
    assert all(abs(s[1][0] - s[0][0]) < 1 for s in segments)  # short: over one bar only
    assert len({v.floor.floor_s for v in owners}) > 1  # the series' floors differ by variant
    _close(fig)


def test_the_article_panel_is_in_the_articles_own_seconds(example, series):
    for summary in (example, series):
        fig = waterfall.waterfall_figure(summary)
        article = fig.axes[1]
        first = summary.article.start_step or 0
        times = [
            summary.article.times_s[str(k)] for k in range(first, summary.article.last_step + 1)
        ]
        assert article.patches[0].get_height() == pytest.approx(times[0])
        assert article.patches[-1].get_height() == pytest.approx(times[-1])
        for patch, before, after in zip(article.patches[1:-1], times[:-1], times[1:], strict=True):
            assert patch.get_height() == pytest.approx(before - after)
        assert "as the sources state them" in article.get_ylabel()
        _close(fig)
    # A `--from` chain starts after its article step, in the article's seconds there.
    later = dataclasses.replace(series.article, start_step=3)
    bars = waterfall.article_bars(dataclasses.replace(series, article=later), " ")
    assert bars[0].end == series.article.times_s["3"]
    assert bars[1].text == "+4 s saved (+1.3%)"  # 301 s -> 297 s


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def _twenty_one(summary):
    variants = [
        dataclasses.replace(summary.variants[i % len(summary.variants)], name=f"+a_step_{i}")
        for i in range(21)
    ]
    return dataclasses.replace(summary, variants=variants)


def test_the_breakdown_is_the_timed_region_by_phase_a4_wide_and_legible(example):
    summary = _twenty_one(example)
    fig = breakdown.breakdown_figure(summary)
    assert fig.get_figwidth() == pytest.approx(breakdown.A4_WIDTH_IN)
    small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < 8]
    assert not small
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [v.name for v in summary.variants]
    for row, variant in enumerate(summary.variants):
        segments = [p for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - row) < 1e-9]
        expected = sum(s.median for s in variant.phases_s.values() if s.median > 0)
        assert sum(p.get_width() for p in segments) == pytest.approx(expected)
        assert any(f"{variant.timing.total_s.median:.2f} s, " in t.get_text() for t in ax.texts)
    _close(fig)


def test_records_without_phases_keep_the_profiled_chart_or_none(example, series):
    old = dataclasses.replace(
        example, variants=[dataclasses.replace(v, phases_s=None) for v in example.variants]
    )
    fig = breakdown.breakdown_figure(old)
    assert fig.axes[0].get_ylabel() == "ms per recorded training step"
    _close(fig)
    assert breakdown.breakdown_figure(series).axes[0].get_ylabel().startswith("ms per")
    unprofiled = dataclasses.replace(
        old, variants=[dataclasses.replace(v, profile=None) for v in old.variants]
    )
    assert breakdown.breakdown_figure(unprofiled) is None  # neither phases nor profiles


def test_a_steps_phases_sit_on_their_side_of_zero_solid_only_where_significant(example):
    fig = phases.step_phases_figure(example)
    ax = fig.axes[0]
    by_id = {p.get_gid(): p for p in ax.patches}
    rows = phase_comparisons(example)
    assert [t.get_text() for t in ax.get_yticklabels()] == [name for name, _, _ in rows]
    faded = solid = 0
    for row, (_, savings, _) in enumerate(rows):
        for phase, saving in savings.items():
            patch = by_id.get(phases.segment_id(row, phase))
            if saving.estimate_s == 0:
                assert patch is None
                continue
            assert patch.get_width() == pytest.approx(saving.estimate_s)
            low, high = sorted((patch.get_x(), patch.get_x() + patch.get_width()))
            assert low >= -1e-12 if saving.estimate_s > 0 else high <= 1e-12
            if saving.significant:
                assert patch.get_alpha() == 1.0 and not patch.get_hatch()
                solid += 1
            else:
                assert patch.get_alpha() == phases.FADED
                assert patch.get_hatch() == waterfall.NOT_SIGNIFICANT_HATCH
                faded += 1
    assert solid and faded
    assert not [t for t in _texts(fig) if t.get_fontsize() < 8]
    _close(fig)


def test_the_report_shows_the_phase_charts_only_for_records_with_phases(example, series):
    assert phases.step_phases_figure(series) is None
    with_phases = render_report(example)
    assert f"![step phases]({outputs.STEP_PHASES}.png)" in with_phases
    section = with_phases.split("## Where each step's seconds went")[1].split("## Where the")[0]
    assert f"![breakdown]({outputs.BREAKDOWN}.png)" in section
    assert with_phases.count(f"![breakdown]({outputs.BREAKDOWN}.png)") == 1
    assert outputs.STEP_PHASES not in render_report(series)
