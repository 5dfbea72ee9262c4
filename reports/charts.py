"""The sentiment picture's charts, drawn on the server as SVG with matplotlib (no script runs in the page).

Each chart is a matplotlib ``Figure`` (never pyplot: no global figure state in a web process) saved
as SVG text to inline in the page. Text stays text (``svg.fonttype: none``: small, selectable, no
font file needed), and each chart's ids are salted with its name so that several charts can share a
page. Bars carry ids (``<chart>-<sentiment>-<key>``) so that tests and readers can find them.
matplotlib's settings are process-wide, so drawing is serialised by a lock.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
import matplotlib.dates as mdates
from matplotlib.figure import Figure

from reports.picture import Distribution, Period, next_period

#: bar and line colours per sentiment (colour-blind-safe: blue, orange, grey).
SENTIMENT_COLOURS = {"positive": "#1f77b4", "negative": "#d95f02", "neutral": "#9e9e9e"}
#: the signed score's line colour.
SCORE_COLOUR = "#333333"
#: share of a period's width its bar fills.
BAR_FILL = 0.8
#: size of the wide charts (over time) and of the narrow ones (distributions), in inches.
WIDE_FIGURE = (10.0, 3.0)
NARROW_FIGURE = (5.0, 2.8)

#: matplotlib settings while drawing: text as text, no timestamp, and the project's look.
_STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e0e0e0",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
}
_DRAWING = threading.Lock()
#: the ids matplotlib numbers per figure (``figure_1``, ``matplotlib.axis_2``, ``line2d_3``).
_NUMBERED_ID = re.compile(r' id="([A-Za-z][\w.]*_\d+)"')


@contextmanager
def _drawing(name: str) -> Iterator[None]:
    with _DRAWING, matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"volfefe-{name}"}):
        yield


def _svg(figure: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog, no creation date), its group ids prefixed
    with ``name``: matplotlib numbers them (``patch_1``) afresh in every figure, and ids must be
    unique in a page. Those ids are never referenced; the referenced ones are salted (``_drawing``)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return _NUMBERED_ID.sub(rf' id="{name}-\1"', text[text.index("<svg") :])


def _centre_and_width(period: Period) -> tuple[float, float]:
    """A period's bar centre (a matplotlib date number) and width (days)."""
    days = (next_period(period.start, period.granularity) - period.start).days
    return mdates.date2num(period.start) + days / 2, days * BAR_FILL


def _date_axis(axes, periods: list[Period]) -> None:  # type: ignore[no-untyped-def]
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    first = mdates.date2num(periods[0].start)
    last = mdates.date2num(next_period(periods[-1].start, periods[-1].granularity))
    margin = max((last - first) * 0.01, 0.5)
    axes.set_xlim(first - margin, last + margin)


def posts_chart(periods: list[Period]) -> str:
    """Stacked bars: posts per period by sentiment (negative at the bottom, then neutral, positive)."""
    with _drawing("posts"):
        figure = Figure(figsize=WIDE_FIGURE)
        axes = figure.add_subplot()
        centres, widths = zip(*(_centre_and_width(p) for p in periods), strict=True)
        bottoms = [0] * len(periods)
        for sentiment in ("negative", "neutral", "positive"):
            heights = [p.posts[sentiment] for p in periods]
            bars = axes.bar(
                centres, heights, widths, bottom=bottoms, color=SENTIMENT_COLOURS[sentiment], label=sentiment
            )
            for bar, period in zip(bars, periods, strict=True):
                bar.set_gid(f"posts-{sentiment}-{period.start.isoformat()}")
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        axes.set_ylabel("posts")
        axes.yaxis.get_major_locator().set_params(integer=True)
        _date_axis(axes, periods)
        axes.legend(loc="upper left", frameon=False, ncols=3, bbox_to_anchor=(0, 1.15))
        return _svg(figure, "posts")


def score_chart(periods: list[Period]) -> str:
    """The mean signed score (positive minus negative probability) per period, from -1 to 1; gaps where a
    period has no scored post."""
    with _drawing("score"):
        figure = Figure(figsize=WIDE_FIGURE)
        axes = figure.add_subplot()
        centres = [_centre_and_width(p)[0] for p in periods]
        means = [p.mean_signed if p.mean_signed is not None else math.nan for p in periods]
        axes.axhspan(0, 1.05, color=SENTIMENT_COLOURS["positive"], alpha=0.06, linewidth=0)
        axes.axhspan(-1.05, 0, color=SENTIMENT_COLOURS["negative"], alpha=0.06, linewidth=0)
        axes.axhline(0, color="#888888", linewidth=0.8)
        (line,) = axes.plot(centres, means, color=SCORE_COLOUR, linewidth=1.4, marker="o", markersize=3)
        line.set_gid("score-line")
        axes.set_ylim(-1.05, 1.05)
        axes.set_ylabel("mean signed score")
        _date_axis(axes, periods)
        return _svg(figure, "score")


def distribution_chart(distribution: Distribution) -> str:
    """Stacked bars: posts per bin of ``distribution`` (confidence or margin) by sentiment."""
    with _drawing(distribution.name):
        figure = Figure(figsize=NARROW_FIGURE)
        axes = figure.add_subplot()
        width = 1 / distribution.bins
        lefts = [i * width for i in range(distribution.bins)]
        bottoms = [0] * distribution.bins
        for sentiment in ("negative", "neutral", "positive"):
            heights = distribution.counts.get(sentiment, [0] * distribution.bins)
            bars = axes.bar(
                lefts,
                heights,
                width * 0.92,
                bottom=bottoms,
                align="edge",
                color=SENTIMENT_COLOURS[sentiment],
                label=sentiment,
            )
            for index, bar in enumerate(bars):
                bar.set_gid(f"{distribution.name}-{sentiment}-{index}")
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        axes.set_xlim(0, 1)
        axes.set_xlabel(distribution.name)
        axes.set_ylabel("posts")
        axes.yaxis.get_major_locator().set_params(integer=True)
        return _svg(figure, distribution.name)


def event_study_chart(curve: dict[str, Any]) -> str:
    """The event-study picture: the mean cumulative abnormal return (percent) at each point of the grid
    (trading minutes from the post), one line per sentiment with a band of one standard error, a zero
    line and a mark at the post; a gap where no path has a value."""
    with _drawing("event-study"):
        figure = Figure(figsize=WIDE_FIGURE)
        axes = figure.add_subplot()
        minutes = curve["minutes"]
        axes.axhline(0, color="#888888", linewidth=0.8, gid="event-study-zero")
        axes.axvline(0, color="#555555", linewidth=0.8, linestyle="--", gid="event-study-post")
        for sentiment in ("positive", "negative", "neutral"):
            line = curve["by_sentiment"].get(sentiment)
            if line is None:
                continue
            means = [math.nan if value is None else 100 * value for value in line["mean"]]
            errors = [math.nan if value is None else 100 * value for value in line["stderr"]]
            colour = SENTIMENT_COLOURS[sentiment]
            axes.fill_between(
                minutes,
                [m - e for m, e in zip(means, errors, strict=True)],
                [m + e for m, e in zip(means, errors, strict=True)],
                color=colour,
                alpha=0.15,
                linewidth=0,
                gid=f"event-study-{sentiment}-band",
            )
            (drawn,) = axes.plot(
                minutes,
                means,
                color=colour,
                linewidth=1.6,
                label=f"{sentiment} (paths: {max(line['n'], default=0)})",
            )
            drawn.set_gid(f"event-study-{sentiment}")
        if minutes:
            axes.set_xlim(minutes[0], minutes[-1])
            axes.set_xticks(sorted({minute for minute in minutes if minute % 60 == 0} | {minutes[-1]}))
        axes.set_xlabel("trading minutes from the post (390: one session later)")
        axes.set_ylabel("mean cumulative abnormal return (%)")
        axes.legend(loc="upper left", frameon=False, ncols=3, bbox_to_anchor=(0, 1.15))
        return _svg(figure, "event-study")
