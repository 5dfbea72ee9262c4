"""The picture of sentiment over time (issue 11, item 3): its numbers are the database's.

Classified posts are written straight into a migrated database on chosen days (``tests.report_seed``),
and what is expected is computed there in plain Python. The data layer runs on SQLite and a real
PostgreSQL; the page (its ``data-*`` figures, escaping, empty and warning states) on SQLite; then
``volfefe report --html`` as a real process, ``/report`` on a real web process with credentials, and
the page opened in headless Chromium with every request outside 127.0.0.1 blocked and recorded.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from db.migrate import upgrade
from db.session import engine_for, session_scope
from model.model_marks import random_weights_warning
from model.visible_text import visible_text
from reports.page import CONTENT_SECURITY_POLICY, excerpt, render_page
from reports.picture import (
    DAILY_MAX_DAYS,
    EXTREME_POSTS,
    RECENT_DAYS,
    WEEKLY_MAX_DAYS,
    SentimentPicture,
    build_picture,
    granularity_for,
    period_start,
)
from reports.selection import InvalidSelection, Selection, make_selection, selection_from_query
from services.redis_server import RedisServer
from tests.browser import Chromium, find_chromium
from tests.reaction_seed import (
    WINDOWS,
    expected_abnormal_returns,
    expected_hit_rates,
    expected_moves,
    seed_reactions,
    selected,
    wilson,
)
from tests.report_page_html import PageFigures, read_page
from tests.report_seed import (
    BINS,
    POSTS,
    SCRIPT_TEXT,
    UNCLASSIFIED,
    SeedPost,
    at,
    bins,
    every_day,
    extremes,
    per_day,
    seed,
)
from tests.web_process import WebProcess, basic_auth, web_environment

VOLFEFE = str(Path(sys.executable).with_name("volfefe"))
CHROMIUM = find_chromium()
USER = "operator"
PASSWORD = "report-page-password"
AUTH = basic_auth(USER, PASSWORD)
SENTIMENTS = ("positive", "negative", "neutral")
#: seconds for the page to load in the browser.
PAGE_TIMEOUT = 60.0


def picture_of(database_url: str, selection: Selection | None = None) -> SentimentPicture:
    with session_scope(database_url) as session:
        return build_picture(session, selection or Selection())


@dataclass(frozen=True)
class Case:
    """A selection, and which seeded posts it must cover."""

    selection: Selection
    keeps: Callable[[SeedPost], bool]


CASES = {
    "all": Case(Selection(), lambda p: True),
    "source": Case(Selection(source="truth"), lambda p: p.source == "truth"),
    "author": Case(Selection(author="trump"), lambda p: p.author == "trump"),
    "since": Case(Selection(since=date(2024, 1, 11)), lambda p: p.day >= date(2024, 1, 11)),
    "until": Case(Selection(until=date(2024, 1, 10)), lambda p: p.day <= date(2024, 1, 10)),
    "source and author": Case(
        Selection(source="twitter", author="biden"), lambda p: (p.source, p.author) == ("twitter", "biden")
    ),
    # The undated post n1 is on 2024-01-13 by its created_at.
    "one day": Case(
        Selection(since=date(2024, 1, 13), until=date(2024, 1, 13)), lambda p: p.day == date(2024, 1, 13)
    ),
}


def assert_picture_matches(picture: SentimentPicture, posts: list[SeedPost]) -> None:
    """Every figure of ``picture`` equals what ``posts`` (the selected seeded posts) make."""
    days = per_day(posts)
    first, last = min(days), max(days)
    assert (picture.first_day, picture.last_day, picture.granularity) == (first, last, "day")
    assert [p.start for p in picture.periods] == every_day(first, last)  # empty days present too
    for period in picture.periods:
        expected = days.get(period.start)
        if expected is None:
            assert period.total == 0 and period.mean_signed is None, period
            continue
        assert period.posts == {s: expected[s] for s in SENTIMENTS}, period.start
        assert period.mean_signed == pytest.approx(expected["mean"], abs=1e-9), period.start
    assert picture.totals == {s: sum(p.sentiment == s for p in posts) for s in SENTIMENTS}
    assert picture.mean_signed == pytest.approx(sum(p.signed for p in posts) / len(posts), abs=1e-9)
    assert picture.undated == sum(p.published is None for p in posts)

    confidence = {
        (i, s): n for s, counts in picture.confidence.counts.items() for i, n in enumerate(counts) if n
    }
    assert confidence == bins([(p.confidence, p.sentiment) for p in posts])
    margin = {(i, s): n for s, counts in picture.margin.counts.items() for i, n in enumerate(counts) if n}
    # The consensus's margin comes from the scores every classification has (audited or not).
    assert margin == bins([(p.margin, p.sentiment) for p in posts])

    negative, positive = extremes(posts, RECENT_DAYS, EXTREME_POSTS)
    by_external = {p.external_id: p for p in posts}
    assert [CONTENT_IDS[post.content_id] for post in picture.most_negative] == negative
    assert [CONTENT_IDS[post.content_id] for post in picture.most_positive] == positive
    for post in picture.most_negative + picture.most_positive:
        assert post.signed == pytest.approx(by_external[CONTENT_IDS[post.content_id]].signed, abs=1e-9)
        assert post.text == visible_text(by_external[CONTENT_IDS[post.content_id]].text)
    assert picture.recent_since == last - timedelta(days=RECENT_DAYS - 1)


#: content id -> external id of the seeded database under test (set by ``seeded`` and ``web_ids``).
CONTENT_IDS: dict[int, str] = {}


@pytest.fixture
def seeded(migrated_db: str) -> str:
    """The migrated database (SQLite, then PostgreSQL) holding POSTS and one unclassified post."""
    ids = seed(migrated_db, POSTS, [UNCLASSIFIED])
    CONTENT_IDS.clear()
    CONTENT_IDS.update({content_id: external for external, content_id in ids.items()})
    return migrated_db


# -- the data layer: SQLite and PostgreSQL --------------------------------------------------------


def test_the_picture_counts_what_the_database_holds(seeded: str) -> None:
    picture = picture_of(seeded)
    assert_picture_matches(picture, POSTS)
    assert picture.periods[[p.start for p in picture.periods].index(UNCLASSIFIED.day)].total == 0
    assert picture.database_classifications == len(POSTS)
    assert picture.model_versions == {POSTS[0].model_version: len(POSTS)}
    assert picture.warnings == []
    assert picture.sources == ["news", "truth", "twitter"]
    assert picture.authors == ["trump", "biden"]  # most posts first


@pytest.mark.parametrize("case", [name for name in CASES if name != "all"])
def test_filters_change_the_numbers(seeded: str, case: str) -> None:
    selected = [p for p in POSTS if CASES[case].keeps(p)]
    picture = picture_of(seeded, CASES[case].selection)
    assert 0 < picture.total < len(POSTS)
    assert_picture_matches(picture, selected)
    assert picture.database_classifications == len(POSTS)


def test_a_selection_that_matches_nothing_is_empty(seeded: str) -> None:
    picture = picture_of(seeded, Selection(source="truth", since=date(2030, 1, 1)))
    assert (picture.total, picture.periods, picture.most_negative, picture.most_positive) == (0, [], [], [])
    assert picture.confidence.total == picture.margin.total == 0
    assert picture.database_classifications == len(POSTS)


def test_long_spans_are_pictured_per_week(migrated_db: str) -> None:
    posts = [
        SeedPost("w1", "s", "a", at("2024-01-01"), at("2024-06-01"), 0.82, 0.11, 0.07),  # a Monday
        SeedPost("w2", "s", "a", at("2024-01-07", "23:59"), at("2024-06-01"), 0.18, 0.71, 0.11),  # its Sunday
        SeedPost(
            "w3", "s", "a", at("2024-01-08", "00:00"), at("2024-06-01"), 0.27, 0.10, 0.63
        ),  # next Monday
        SeedPost("w4", "s", "a", at("2024-04-16"), at("2024-06-01"), 0.04, 0.91, 0.05),
    ]
    seed(migrated_db, posts)
    picture = picture_of(migrated_db)
    assert picture.granularity == "week"
    starts = [p.start for p in picture.periods]
    assert starts[0] == date(2024, 1, 1) and starts[-1] == date(2024, 4, 15)
    assert all(b - a == timedelta(days=7) for a, b in itertools.pairwise(starts))
    first, second, last = picture.periods[0], picture.periods[1], picture.periods[-1]
    assert (first.label, first.posts) == ("2024-W01", {"positive": 1, "negative": 1, "neutral": 0})
    assert first.mean_signed == pytest.approx((0.71 - 0.53) / 2)
    assert second.posts == {"positive": 0, "negative": 0, "neutral": 1}
    assert last.posts == {"positive": 0, "negative": 1, "neutral": 0}
    assert sum(p.total for p in picture.periods) == 4


# -- choices that need no database ----------------------------------------------------------------


def test_the_span_chooses_days_weeks_or_months() -> None:
    start = date(2024, 1, 1)
    assert granularity_for(start, start) == "day"
    assert granularity_for(start, start + timedelta(days=DAILY_MAX_DAYS - 1)) == "day"
    assert granularity_for(start, start + timedelta(days=DAILY_MAX_DAYS)) == "week"
    assert granularity_for(start, start + timedelta(days=WEEKLY_MAX_DAYS - 1)) == "week"
    assert granularity_for(start, start + timedelta(days=WEEKLY_MAX_DAYS)) == "month"
    assert period_start(date(2024, 2, 29), "week") == date(2024, 2, 26)
    assert period_start(date(2024, 2, 29), "month") == date(2024, 2, 1)


def test_filters_from_text() -> None:
    assert make_selection(" truth ", "", "2024-01-01", None) == Selection("truth", None, date(2024, 1, 1))
    assert selection_from_query({"until": "2024-02-29", "author": "x"}) == Selection(
        author="x", until=date(2024, 2, 29)
    )
    for since, until, message in [
        ("2024-13-01", None, "since '2024-13-01' is not a date (YYYY-MM-DD)"),
        ("20240101", None, "since '20240101' is not a date (YYYY-MM-DD)"),
        (None, "yesterday", "until 'yesterday' is not a date (YYYY-MM-DD)"),
        ("2024-02-02", "2024-02-01", "since 2024-02-02 is after until 2024-02-01: no day is left"),
    ]:
        with pytest.raises(InvalidSelection) as raised:
            make_selection(since=since, until=until)
        assert str(raised.value) == message


# -- the page -------------------------------------------------------------------------------------


def assert_page_matches(figures: PageFigures, posts: list[SeedPost]) -> None:
    """The page's stated figures equal the seeded posts' (and so the database's)."""
    days = per_day(posts)
    summary = figures.summary
    assert int(summary["data-total"]) == len(posts)
    for sentiment in SENTIMENTS:
        assert int(summary[f"data-{sentiment}"]) == sum(p.sentiment == sentiment for p in posts)
    assert float(summary["data-mean-signed"]) == pytest.approx(
        sum(p.signed for p in posts) / len(posts), abs=1e-6
    )
    assert summary["data-first-day"] == min(days).isoformat()
    assert summary["data-last-day"] == max(days).isoformat()
    assert int(summary["data-undated"]) == sum(p.published is None for p in posts)

    assert list(figures.periods) == [d.isoformat() for d in every_day(min(days), max(days))]
    for day, row in figures.periods.items():
        expected = days.get(date.fromisoformat(day))
        if expected is None:
            assert (row["data-total"], row["data-mean-signed"]) == ("0", ""), day
            continue
        assert {s: int(row[f"data-{s}"]) for s in SENTIMENTS} == {s: expected[s] for s in SENTIMENTS}, day
        assert float(row["data-mean-signed"]) == pytest.approx(expected["mean"], abs=1e-6), day

    stated_confidence = {
        (index, s): int(row[f"data-{s}"])
        for index, row in figures.bins["confidence-bins"].items()
        for s in SENTIMENTS
        if int(row[f"data-{s}"])
    }
    assert stated_confidence == bins([(p.confidence, p.sentiment) for p in posts])
    assert len(figures.bins["margin-bins"]) == BINS

    negative, positive = extremes(posts, RECENT_DAYS, EXTREME_POSTS)
    by_external = {p.external_id: p for p in posts}
    for listing, expected_ids in (("most-negative", negative), ("most-positive", positive)):
        shown = figures.posts.get(listing, [])
        assert [CONTENT_IDS[int(item["data-content-id"])] for item, _ in shown] == expected_ids
        for item, text in shown:
            post = by_external[CONTENT_IDS[int(item["data-content-id"])]]
            assert float(item["data-signed"]) == pytest.approx(post.signed, abs=1e-6)
            assert text == excerpt(post.text)
    assert figures.charts[:4] == ["posts", "score", "confidence", "margin"]
    assert figures.charts[4:] in ([], ["event-study"])  # with reactions
    assert figures.scripts == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", list(CASES))
def test_the_page_states_the_database_numbers(seeded: str, case: str) -> None:
    posts = [p for p in POSTS if CASES[case].keeps(p)]
    html = render_page(picture_of(seeded, CASES[case].selection))
    assert_page_matches(read_page(html), posts)
    for post in posts:  # every day with posts has its bars in the chart
        assert f'id="posts-{post.sentiment}-{post.day.isoformat()}"' in html


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_post_text_is_escaped(seeded: str) -> None:
    html = render_page(picture_of(seeded), with_filters=True)
    assert "<script" not in html.lower() and "<crash>" not in html
    assert "Stocks &lt;crash&gt; &amp; &#34;burn&#34; after tariffs, x&lt;y" in html
    shown = dict(
        (CONTENT_IDS[int(item["data-content-id"])], text)
        for item, text in read_page(html).posts["most-negative"]
    )
    assert shown["x2"] == SCRIPT_TEXT  # what a reader sees is the text, not markup


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_page_is_self_contained(seeded: str) -> None:
    html = render_page(picture_of(seeded), with_filters=True)
    lowered = html.lower()
    for loader in ("<script", "<link", " src=", "@import", "<iframe", "<object", "<embed"):
        assert loader not in lowered, loader
    assert re.findall(r"url\((?!#)", lowered) == []  # only references inside the page (clip paths)
    links = {link[:1] for link in re.findall(r'href="([^"]*)"', html)}
    assert links <= {"#", "?"}  # references inside the SVG, and the filter form's reset
    assert read_page(html).content_security_policy == CONTENT_SECURITY_POLICY
    assert lowered.count("<svg") == 4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_empty_database_has_a_page_that_says_so(migrated_db: str) -> None:
    figures = read_page(render_page(picture_of(migrated_db), with_filters=True))
    assert figures.empty == "database"
    assert (figures.charts, figures.periods, figures.summary) == ([], {}, {})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_selection_without_posts_says_so(seeded: str) -> None:
    figures = read_page(render_page(picture_of(seeded, Selection(author="nobody"))))
    assert figures.empty == "selection" and figures.charts == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_random_weight_classifications_carry_the_reports_warning(migrated_db: str) -> None:
    random_version = "models/tiny+random-weights+fp32"
    posts = [
        SeedPost(
            "r1", "s", "a", at("2024-01-01"), at("2024-01-02"), 0.82, 0.11, 0.07, model_version=random_version
        ),
        SeedPost(
            "r2", "s", "a", at("2024-01-02"), at("2024-01-02"), 0.18, 0.71, 0.11, model_version=random_version
        ),
        SeedPost("r3", "s", "a", at("2024-01-02"), at("2024-01-02"), 0.27, 0.10, 0.63),
    ]
    seed(migrated_db, posts)
    figures = read_page(render_page(picture_of(migrated_db)))
    assert figures.warnings == random_weights_warning(2)
    assert figures.model_versions == {random_version: 2, POSTS[0].model_version: 1}


# -- what the market did ------------------------------------------------------------------------


def assert_reactions_on_page(figures: PageFigures, posts: list[SeedPost]) -> None:
    """The page's reactions figures equal those of the seeded reactions of ``posts``, worked out by hand."""
    reactions = selected(posts)
    summary = figures.reactions
    assert int(summary["data-records"]) == len(reactions)
    assert int(summary["data-posts"]) == len({r.external_id for r in reactions})
    significant = [r for r in reactions if r.p_value is not None and r.p_value < 0.05]
    assert int(summary["data-significant"]) == len(significant)
    statuses = {r.status for r in reactions}
    for status in statuses:
        stated = int(summary[f"data-status-{status.replace('_', '-')}"])
        assert stated == sum(r.status == status for r in reactions)

    rates = expected_hit_rates(reactions)
    assert list(figures.hit_rates) == [w for w in WINDOWS if w in rates]
    for window, row in figures.hit_rates.items():
        expected = rates[window]
        assert (int(row["data-n"]), int(row["data-hits"]), int(row["data-zero-moves"])) == (
            expected["n"], expected["hits"], expected["zero_moves"],
        )  # fmt: skip
        if expected["n"]:
            low, high = wilson(expected["hits"], expected["n"])
            assert float(row["data-hit-rate"]) == pytest.approx(expected["hits"] / expected["n"], abs=1e-6)
            assert (float(row["data-low"]), float(row["data-high"])) == pytest.approx((low, high), abs=1e-6)

    means = expected_abnormal_returns(reactions)
    assert set(figures.abnormal_returns) == {(w, s) for w, by in means.items() for s in by}
    for (window, sentiment), row in figures.abnormal_returns.items():
        expected = means[window][sentiment]
        assert int(row["data-n"]) == expected["n"]
        assert float(row["data-mean"]) == pytest.approx(expected["mean"], abs=1e-6)
        for name in ("stdev", "stderr"):
            stated = row[f"data-{name}"]
            assert (
                (stated == "")
                if expected[name] is None
                else float(stated) == pytest.approx(expected[name], abs=1e-6)
            )

    by_external = {p.external_id: p for p in posts}
    moves = [
        (
            CONTENT_IDS[int(move.attributes["data-content-id"])],
            move.attributes["data-symbol"],
            move.attributes["data-window"],
        )
        for move in figures.moves
    ]
    assert moves == expected_moves(reactions)
    texts = [text for _, text in figures.posts.get("reaction-moves", [])]
    assert texts == [excerpt(by_external[external].text) for external, _, _ in moves]
    for move, (external, _, _) in zip(figures.moves, moves, strict=True):
        post = by_external[external]
        assert move.attributes["data-sentiment"] == post.sentiment
        assert float(move.attributes["data-confidence"]) == pytest.approx(post.confidence, abs=1e-6)
        assert move.assets and move.models == {}  # one model: its reading is the consensus
    assert ("event-study" in figures.charts) == bool(reactions)


@pytest.fixture
def reacted(seeded: str) -> str:
    """The seeded database (SQLite) with the seeded reactions of its posts."""
    seed_reactions(seeded, {external: content_id for content_id, external in CONTENT_IDS.items()})
    return seeded


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", list(CASES))
def test_the_page_states_the_reactions(reacted: str, case: str) -> None:
    posts = [p for p in POSTS if CASES[case].keeps(p)]
    html = render_page(picture_of(reacted, CASES[case].selection))
    figures = read_page(html)
    assert_page_matches(figures, posts)  # the sentiment figures are as without reactions
    assert_reactions_on_page(figures, posts)
    assert figures.scripts == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_reactions_section_draws_the_event_study_and_lists_the_moves(reacted: str) -> None:
    html = render_page(picture_of(reacted), with_filters=True)
    figures = read_page(html)
    assert figures.charts == ["posts", "score", "confidence", "margin", "event-study"]
    for sentiment in SENTIMENTS:  # one line per sentiment, a zero line and a mark at the post
        assert f'id="event-study-{sentiment}"' in html
    assert 'id="event-study-zero"' in html and 'id="event-study-post"' in html
    t3 = next(move for move in figures.moves if CONTENT_IDS[int(move.attributes["data-content-id"])] == "t3")
    assert [(a["data-asset"], a["data-method"]) for a in t3.assets] == [("AAPL", "cashtag"), ("SPY", "alias")]
    assert "AAPL: cashtag (“$AAPL”)" in html and "SPY: alias (“stock market”, “S&amp;P 500”)" in html
    lowered = html.lower()
    assert "<script" not in lowered and lowered.count("<svg") == 5
    assert read_page(html).content_security_policy == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_page_without_reactions_says_how_to_get_them(seeded: str) -> None:
    html = render_page(picture_of(seeded))
    figures = read_page(html)
    assert figures.reactions == {"class": "note", "id": "reactions", "data-records": "0"}
    assert "volfefe import-prices FILE" in html and "event-study" not in figures.charts
    assert (figures.hit_rates, figures.moves) == ({}, [])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_move_shows_each_models_label_where_several_run(migrated_db: str) -> None:
    from db.models import Content
    from db.reaction_store import replace_reactions
    from tests.reaction_seed import SeedReaction
    from tests.rows import store_classification

    weights = {"tone": 1.0, "roberta": 1.0}
    readings = {
        "tone": ("positive", {"positive": 0.8, "negative": 0.1, "neutral": 0.1}),
        "roberta": ("negative", {"positive": 0.3, "negative": 0.6, "neutral": 0.1}),
    }
    with session_scope(migrated_db) as session:
        content = Content(
            source="truth", external_id="t1", text="Great deal!", published_at=POSTS[0].published
        )
        session.add(content)
        session.flush()
        for model, (label, scores) in readings.items():
            store_classification(
                session,
                content.id,
                label,
                scores[label],
                f"{model}+fp32",
                scores,
                model=model,
                weights=weights,
            )
        record = SeedReaction("t1", "SPY", "1h", 0.012, 4.0).record(content.id)
        replace_reactions(session, {content.id: ([record], [])})
    figures = read_page(render_page(picture_of(migrated_db, Selection()), with_filters=False))
    (move,) = figures.moves
    # The consensus: the mean of their probabilities, positive (0.8 + 0.3) / 2 = 0.55.
    assert (move.attributes["data-sentiment"], float(move.attributes["data-confidence"])) == (
        "positive", pytest.approx(0.55, abs=1e-6),
    )  # fmt: skip
    assert {name: (r["data-sentiment"], float(r["data-confidence"])) for name, r in move.models.items()} == {
        "tone": ("positive", pytest.approx(0.8)),
        "roberta": ("negative", pytest.approx(0.6)),
    }


# -- volfefe report --html ------------------------------------------------------------------------


def run_volfefe(args: list[str], database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "VOLFEFE_DATA_DIR"}}
    env.update(DATABASE_URL=database_url, VOLFEFE_DATA_DIR=str(cwd / "var"))
    return subprocess.run([VOLFEFE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_volfefe_report_html_writes_the_page(seeded: str, tmp_path: Path) -> None:
    target = tmp_path / "picture.html"
    done = run_volfefe(
        ["report", "--html", "picture.html", "--source", "truth", "--since", "2024-01-01"], seeded, tmp_path
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{target}\n", "")
    posts = [p for p in POSTS if p.source == "truth" and p.day >= date(2024, 1, 1)]
    assert_page_matches(read_page(target.read_text(encoding="utf-8")), posts)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--html", "p.html", "--since", "2024-13-01"], "since '2024-13-01' is not a date (YYYY-MM-DD)"),
        (["--since", "2024-01-01"], "--since narrow the --html page: add --html FILE"),
        (["--html", "p.html", "--json"], "--html writes the page alone: leave out --json and --uncertain"),
        (["--html", "missing/p.html"], "cannot write missing/p.html: No such file or directory"),
    ],
)
def test_volfefe_report_html_refuses_in_one_line(
    seeded: str, tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_volfefe(["report", *args], seeded, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"volfefe: error: {message}\n")
    assert not (tmp_path / "p.html").exists()


def test_volfefe_report_html_creates_no_database(tmp_path: Path) -> None:
    database = tmp_path / "absent.db"
    done = run_volfefe(["report", "--html", "p.html"], f"sqlite:///{database}", tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"volfefe: error: database sqlite:///{database} does not exist: run `volfefe db upgrade`\n"
    )
    assert not database.exists() and not (tmp_path / "p.html").exists()


# -- /report on the web process, and in a browser -------------------------------------------------


@pytest.fixture(scope="module")
def report_web(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """A web process with credentials over a SQLite database holding POSTS."""
    folder = tmp_path_factory.mktemp("report-web")
    database_url = f"sqlite:///{folder / 'volfefe.db'}"
    upgrade(database_url)
    ids = seed(database_url, POSTS, [UNCLASSIFIED])
    engine_for(database_url).dispose()
    env = web_environment(
        folder / "var",
        redis_server.url,
        DATABASE_URL=database_url,
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
    )
    with WebProcess(env, folder / "web.log") as process:
        process.content_ids = {content_id: external for external, content_id in ids.items()}  # type: ignore[attr-defined]
        yield process


@pytest.fixture
def web_ids(report_web: WebProcess) -> Iterator[WebProcess]:
    CONTENT_IDS.clear()
    CONTENT_IDS.update(report_web.content_ids)  # type: ignore[attr-defined]
    yield report_web


@pytest.mark.integration
def test_the_report_page_asks_for_credentials(web_ids: WebProcess) -> None:
    assert web_ids.get("/report").status == 401
    assert web_ids.get("/report", basic_auth(USER, "wrong")).status == 401
    page = web_ids.get("/report", AUTH)
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.integration
def test_the_report_page_filters_by_query(web_ids: WebProcess) -> None:
    page = web_ids.get("/report?author=trump&until=2024-01-11", AUTH)
    assert page.status == 200
    posts = [p for p in POSTS if p.author == "trump" and p.day <= date(2024, 1, 11)]
    figures = read_page(page.body)
    assert int(figures.summary["data-total"]) == len(posts)
    assert_page_matches(figures, posts)
    assert 'name="author" value="trump"' in page.body

    refused = web_ids.get("/report?since=2024-02-30", AUTH)
    assert (refused.status, refused.body) == (
        400,
        "bad filter: since '2024-02-30' is not a date (YYYY-MM-DD)\n",
    )


@pytest.mark.integration
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary: apt-get install -y chromium")
def test_the_page_renders_in_a_browser_without_leaving_localhost(web_ids: WebProcess, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    requested: list[str] = []
    blocked: list[str] = []

    def route(chromium: Chromium, event: dict[str, Any]) -> None:
        params = event["params"]
        url = params["request"]["url"]
        requested.append(url)
        if urlsplit(url).hostname == "127.0.0.1":
            chromium.post("Fetch.continueRequest", {"requestId": params["requestId"]}, event.get("sessionId"))
        else:
            blocked.append(url)
            chromium.post(
                "Fetch.failRequest",
                {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                event.get("sessionId"),
            )

    def log_in(chromium: Chromium, event: dict[str, Any]) -> None:
        chromium.post(
            "Fetch.continueWithAuth",
            {
                "requestId": event["params"]["requestId"],
                "authChallengeResponse": {
                    "response": "ProvideCredentials",
                    "username": USER,
                    "password": PASSWORD,
                },
            },
            session=event.get("sessionId"),
        )

    with Chromium(CHROMIUM, tmp_path / "profile") as browser:
        browser.on("Fetch.requestPaused", route)
        browser.on("Fetch.authRequired", log_in)
        tab = browser.new_page()
        browser.send("Network.enable", session=tab)
        browser.send("Log.enable", session=tab)
        browser.send("Page.enable", session=tab)
        browser.send(
            "Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]}, session=tab
        )
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=tab,
        )
        since = browser.mark()
        browser.send("Page.navigate", {"url": f"{web_ids.base}/report"}, session=tab)
        browser.wait_for_event(
            lambda e: e.get("method") == "Page.loadEventFired" and e.get("sessionId") == tab,
            PAGE_TIMEOUT,
            since,
        )

        measured = browser.send(
            "Runtime.evaluate",
            {
                "expression": """(() => {
                    const box = (element) => { const r = element.getBoundingClientRect(); return [r.width, r.height]; };
                    const charts = {};
                    for (const figure of document.querySelectorAll('figure.chart')) {
                        charts[figure.dataset.chart] = box(figure.querySelector('svg'));
                    }
                    const bar = (id) => box(document.getElementById(id))[1];
                    return {
                        charts,
                        scripts: document.scripts.length,
                        title: document.title,
                        bars: {
                            twoPositive: bar('posts-positive-2024-01-13'),
                            oneNegative: bar('posts-negative-2023-11-01'),
                            none: bar('posts-neutral-2024-01-13'),
                        },
                        line: box(document.getElementById('score-line')),
                    };
                })()""",
                "returnByValue": True,
            },
            session=tab,
        )["result"]["value"]
        metrics = browser.send("Page.getLayoutMetrics", session=tab)["cssContentSize"]
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": int(metrics["height"]), "deviceScaleFactor": 1, "mobile": False},
            session=tab,
        )
        shot = browser.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=tab
        )
        # Every load the page attempted, also those its Content-Security-Policy stopped before the network.
        attempted = [
            event["params"]["request"]["url"]
            for event in browser.events
            if event.get("method") == "Network.requestWillBeSent" and event.get("sessionId") == tab
        ]
        refused = [
            event["params"]["entry"]["text"]
            for event in browser.events
            if event.get("method") == "Log.entryAdded" and event["params"]["entry"]["source"] == "security"
        ]
    screenshot = tmp_path / "report-page.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))

    assert blocked == [] and refused == []
    assert requested and all(urlsplit(url).hostname == "127.0.0.1" for url in requested), requested
    # data: URLs stay in the browser (Chromium's own date-field icon is one).
    local = [url for url in attempted if urlsplit(url).hostname == "127.0.0.1" or url.startswith("data:")]
    assert attempted and local == attempted, attempted
    assert set(measured["charts"]) == {"posts", "score", "confidence", "margin"}
    for name, (chart_width, chart_height) in measured["charts"].items():
        assert chart_width > 300 and chart_height > 100, (name, chart_width, chart_height)
    # The bars are drawn to scale: 2 posts stand twice as tall as 1, and 0 posts has no height.
    bars = measured["bars"]
    assert bars["oneNegative"] > 5
    assert bars["twoPositive"] == pytest.approx(2 * bars["oneNegative"], rel=0.03)
    assert bars["none"] < 0.5
    assert measured["line"][0] > 100
    assert measured["scripts"] == 0 and measured["title"].startswith("Sentiment over time")  # no script ran
    assert screenshot.stat().st_size > 10_000
