"""What the market did after the posts, in the report (issue 17, part 4): its figures are the database's.

Hand-made reaction records of the report's seeded posts (``tests.reaction_seed``) are written into a
migrated database (SQLite and a real PostgreSQL); the ``reactions`` section (hit rates with Wilson's
interval, mean abnormal returns with their spread, the largest significant moves with their posts, the
event-study curve) is checked against values worked out by hand, with the page's filters too; then the
text report, ``volfefe report --json`` as a real process, ``/metrics`` (the collector, and a real web
process on PostgreSQL), the sample-prices tool, and ``volfefe run`` computing the reactions when prices
are stored (real redis-server, real worker processes, the tiny model).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, select

from cli.report import build_report, render_report
from db.metric_queries import significant_reactions_by_window
from db.models import Content, Reaction, ReactionPath
from db.session import engine_for, session_scope
from jobs.metrics import SIGNIFICANT_LABELS, DatabaseCollector
from market.calendar import to_seconds, trading_calendar
from market.reaction import significance_level
from market.settings import market_settings
from reports.reactions import reactions_section
from reports.selection import Selection
from tests.reaction_seed import (
    GRID,
    PATHS,
    REACTIONS,
    T3_ASSETS,
    WINDOWS,
    expected_abnormal_returns,
    expected_curve,
    expected_hit_rates,
    expected_moves,
    seed_reactions,
    selected,
    wilson,
)
from tests.report_seed import POSTS, UNCLASSIFIED, SeedPost, seed
from tests.web_process import WebProcess, basic_auth, web_environment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VOLFEFE = str(BIN / "volfefe")
USER, PASSWORD = "watcher", "reactions-test-password"


@pytest.fixture
def reacted(migrated_db: str) -> tuple[str, dict[str, int]]:
    """The migrated database (SQLite, then PostgreSQL) with the seeded posts and their reactions."""
    ids = seed(migrated_db, POSTS, [UNCLASSIFIED])
    seed_reactions(migrated_db, ids)
    return migrated_db, ids


def section(url: str, selection: Selection | None = None) -> dict:
    with session_scope(url) as session:
        return reactions_section(session, selection)


def assert_section_matches(found: dict, posts: list[SeedPost], ids: dict[str, int]) -> None:
    """Every figure of a ``reactions`` section equals what the seeded reactions of ``posts`` make."""
    reactions = selected(posts)
    external = {content_id: name for name, content_id in ids.items()}
    assert found["records"] == len(reactions)
    assert found["posts"] == len({r.external_id for r in reactions})
    assert found["posts_without_sentiment"] == 0
    assert found["by_status"] == {
        status: sum(r.status == status for r in reactions) for status in sorted({r.status for r in reactions})
    }
    significant = [r for r in reactions if r.p_value is not None and r.p_value < 0.05]
    assert found["significant"] == len(significant)
    assert found["significant_by_window"] == {
        window: n for window in WINDOWS if (n := sum(r.window == window for r in significant))
    }

    rates = expected_hit_rates(reactions)
    assert list(found["hit_rate"]) == [window for window in WINDOWS if window in rates]
    for window, rate in found["hit_rate"].items():
        expected = rates[window]
        assert (rate["n"], rate["hits"], rate["zero_moves"]) == (
            expected["n"], expected["hits"], expected["zero_moves"],
        )  # fmt: skip
        assert rate["hit_rate"] == pytest.approx(expected["hits"] / expected["n"])
        assert rate["interval"] == pytest.approx(list(wilson(expected["hits"], expected["n"])))

    means = expected_abnormal_returns(reactions)
    assert list(found["abnormal_return"]) == [window for window in WINDOWS if window in means]
    for window, by_sentiment in found["abnormal_return"].items():
        assert list(by_sentiment) == [s for s in ("positive", "negative", "neutral") if s in means[window]]
        for sentiment, figures in by_sentiment.items():
            expected = means[window][sentiment]
            assert figures["n"] == expected["n"]
            assert figures["mean"] == pytest.approx(expected["mean"], abs=1e-12)
            for name in ("stdev", "stderr"):
                assert figures[name] == (None if expected[name] is None else pytest.approx(expected[name]))

    by_external = {post.external_id: post for post in posts}
    moves = found["largest_significant_moves"]
    assert [(external[m["content_id"]], m["symbol"], m["window"]) for m in moves] == expected_moves(reactions)
    for move in moves:
        post = by_external[external[move["content_id"]]]
        seeded = next(
            r for r in reactions
            if (r.external_id, r.symbol, r.window) == (post.external_id, move["symbol"], move["window"])
        )  # fmt: skip
        assert (move["abnormal_return"], move["z_score"], move["significance"]) == (
            seeded.abnormal, seeded.z, seeded.significance,
        )  # fmt: skip
        assert move["p_value"] == pytest.approx(math.erfc(abs(seeded.z) / math.sqrt(2)))
        assert (move["text"], move["source"], move["author"]) == (post.text, post.source, post.author)
        assert (move["sentiment"], move["confidence"]) == (post.sentiment, pytest.approx(post.confidence))
        assert move["models"] == {
            "finbert": {"sentiment": post.sentiment, "confidence": pytest.approx(post.confidence)}
        }
        if post.external_id == "t3":
            assert move["assets"] == [
                {"symbol": symbol, "kind": kind, "method": method, "words": words}
                for symbol, (kind, method, words) in sorted(T3_ASSETS.items())
            ]
        else:
            assert move["assets"] == [{"symbol": "SPY", "kind": "etf", "method": "default", "words": []}]

    curve = found["event_study"]
    expected_lines = expected_curve(posts)
    assert curve["minutes"] == (GRID if expected_lines else [])
    assert set(curve["by_sentiment"]) == set(expected_lines)
    for sentiment, line in curve["by_sentiment"].items():
        assert line["mean"] == [
            None if v is None else pytest.approx(v, abs=1e-12) for v in expected_lines[sentiment]
        ]
    assert curve["paths_on_other_grids"] == 0


# -- the figures, SQLite and PostgreSQL --------------------------------------------------------------


def test_the_reactions_figures_are_worked_out_by_hand(reacted: tuple[str, dict[str, int]]) -> None:
    url, ids = reacted
    found = section(url)
    assert_section_matches(found, POSTS, ids)
    # The same, once more with the numbers written out. 1h: positive t1 +1.2%, t3 +0.2% (SPY) and +2.0%
    # (AAPL): 3 hits; negative t2 -0.4% hit, x2 +0.6% miss, t0 -1.5% hit: 5 of 6. Wilson at 95%:
    # centre (5/6 + z²/12) / (1 + z²/6) = 0.7032, half 0.2667: 0.4365 .. 0.9699.
    hour = found["hit_rate"]["1h"]
    assert (hour["hits"], hour["n"]) == (5, 6)
    assert [round(bound, 4) for bound in hour["interval"]] == [0.4365, 0.9699]
    # 1d: t1 -1% miss, x2 -3% hit, t3 AAPL +0.5% hit; t0's 0 is a zero move; t2 incomplete, t3 SPY awaiting.
    day = found["hit_rate"]["1d"]
    assert (day["hits"], day["n"], day["zero_moves"]) == (2, 3, 1)
    positive = found["abnormal_return"]["1h"]["positive"]
    assert positive["mean"] == pytest.approx((0.012 + 0.002 + 0.02) / 3)
    # deviations -0.000333, -0.009333, +0.008667: sum of squares 1.6267e-4 over 2.
    assert positive["stdev"] == pytest.approx(math.sqrt(1.626667e-4 / 2), rel=1e-5)
    assert found["significant"] == 5 and found["by_status"] == {
        "awaiting_prices": 1,
        "incomplete": 1,
        "ok": 12,
    }
    # The event-study curve at +60 min: positive (0.012 + 0.002 + 0.02) / 3, negative (-0.004 + 0.006 - 0.015) / 3.
    at_60 = GRID.index(60)
    assert found["event_study"]["by_sentiment"]["positive"]["mean"][at_60] == pytest.approx(0.034 / 3)
    assert found["event_study"]["by_sentiment"]["negative"]["mean"][at_60] == pytest.approx(-0.013 / 3)
    # At +390: t2's and t3 SPY's paths have no value (a missing bar): left out, not filled.
    assert found["event_study"]["by_sentiment"]["positive"]["n"][GRID.index(390)] == 2


SELECTIONS = {
    "source": (Selection(source="truth"), lambda p: p.source == "truth"),
    "author": (Selection(author="biden"), lambda p: p.author == "biden"),
    "since": (Selection(since=date(2024, 1, 11)), lambda p: p.day >= date(2024, 1, 11)),
    "until": (Selection(until=date(2024, 1, 10)), lambda p: p.day <= date(2024, 1, 10)),
    "nothing": (Selection(since=date(2030, 1, 1)), lambda p: False),
}


@pytest.mark.parametrize("name", list(SELECTIONS))
def test_the_pictures_filters_narrow_the_reactions(reacted: tuple[str, dict[str, int]], name: str) -> None:
    url, ids = reacted
    selection, keeps = SELECTIONS[name]
    posts = [post for post in POSTS if keeps(post)]
    found = section(url, selection)
    assert_section_matches(found, posts, ids)
    assert found["records"] < len(REACTIONS)


def test_paths_on_another_grid_are_left_out_and_counted(reacted: tuple[str, dict[str, int]]) -> None:
    url, ids = reacted
    with session_scope(url) as session:
        path = {"content_id": ids["t1"], "symbol": "QQQ", "minutes": [0, 15], "car": [0.0, 0.5]}
        session.add(ReactionPath(content_id=ids["t1"], symbol="QQQ", path=path))
    curve = section(url)["event_study"]
    assert (curve["paths_on_other_grids"], curve["paths"], curve["minutes"]) == (1, len(PATHS), GRID)


# -- the text report and volfefe report --json -------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_text_report_summarises_the_reactions(reacted: tuple[str, dict[str, int]]) -> None:
    url, ids = reacted
    text = render_report(build_report(url))
    lines = text.splitlines()
    assert (
        "reactions 14 (post, asset, window) of 6 posts: awaiting_prices 1, incomplete 1, ok 12; "
        "significant at p<0.05: 5"
    ) in lines
    assert "    1h   5 of 6 = 0.833, 95% interval 0.436-0.970" in lines
    assert "    1d   2 of 3 = 0.667, 95% interval 0.208-0.939" in lines
    # 1h negative: (-0.004 + 0.006 - 0.015) / 3 = -0.433%; 1d neutral x1 alone: -0.1%, no spread.
    hour = next(line for line in lines if line.startswith("    1h   positive"))
    assert "positive +1.133% ± 0.521% (3)" in hour and "negative -0.433% ± 0.606% (3)" in hour
    assert "neutral -0.100% (1)" in next(line for line in lines if line.startswith("    1d   positive"))
    assert (
        f"  largest significant move: content {ids['t0']} (negative) SPY 1h -1.500% abnormal, z -5.00; "
        in text
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_report_without_reactions_says_how_to_get_them(migrated_db: str) -> None:
    seed(migrated_db, POSTS)
    report = build_report(migrated_db)
    assert report["reactions"]["records"] == 0 and report["reactions"]["hit_rate"] == {}
    assert render_report(report).splitlines()[-1] == (
        "no reactions yet: import prices with volfefe import-prices, then run a worker or volfefe run"
    )


def volfefe(
    args: list[str], env_overrides: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOLFEFE_", "FINBERT_")) and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **env_overrides)
    return subprocess.run(
        [VOLFEFE, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_volfefe_report_json_has_the_reactions_section(
    reacted: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    url, ids = reacted
    engine_for(url).dispose()
    done = volfefe(["report", "--json"], {"DATABASE_URL": url, "VOLFEFE_DATA_DIR": str(tmp_path / "var")})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    found = json.loads(done.stdout)["reactions"]
    assert_section_matches(found, POSTS, ids)
    assert found["windows"] == WINDOWS and found["significance_level"] == 0.05


# -- /metrics ------------------------------------------------------------------------------------------


def test_the_significant_labels_are_those_of_a_p_value_below_the_reports_level() -> None:
    rng = random.Random(5)
    for p in [0.0, 0.001, 0.00999, 0.01, 0.0499, 0.05, 0.2, *(rng.random() / 10 for _ in range(1000))]:
        assert (significance_level(p) in SIGNIFICANT_LABELS) == (p < 0.05), p


def database_truth(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Reactions by status, and the records with a p-value below 0.05 by window, read whole."""
    with session_scope(url) as session:
        rows = list(session.scalars(select(Reaction)))
    statuses: dict[str, int] = {}
    significant = {window.label: 0 for window in market_settings().windows}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
        if row.record.get("p_value") is not None and row.record["p_value"] < 0.05:
            significant[row.window] = significant.get(row.window, 0) + 1
    return statuses, significant


def test_metrics_count_the_significant_reactions_of_the_database(reacted: tuple[str, dict[str, int]]) -> None:
    url, _ = reacted
    collector = DatabaseCollector(url, fakeredis.FakeRedis(), "ml_classification", timedelta(hours=1))
    families = {family.name: family for family in collector.collect()}
    statuses, significant = database_truth(url)
    assert {s.labels["status"]: s.value for s in families["volfefe_reactions"].samples} == statuses
    assert {
        s.labels["window"]: s.value for s in families["volfefe_significant_reactions"].samples
    } == significant
    assert significant == {"1h": 4, "4h": 0, "1d": 1}  # 4h configured, none stored: 0


def test_the_significant_count_reads_the_significance_index(reacted: tuple[str, dict[str, int]]) -> None:
    """The count's query, as the database plans it: through ``ix_reactions_significance`` (PostgreSQL
    is told to avoid a sequential scan where it can: 14 rows would not need an index)."""
    url, _ = reacted
    engine = engine_for(url)
    statements: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with session_scope(url) as session:
            assert significant_reactions_by_window(session, SIGNIFICANT_LABELS) == {"1h": 4, "1d": 1}
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    statement, parameters = next((s, p) for s, p in statements if "significance" in s)
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(f"EXPLAIN {statement}", parameters)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
        plan = " ".join(str(row) for row in cursor.fetchall())
        cursor.close()
        connection.rollback()
    assert "ix_reactions_significance" in plan, plan


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_scrape_of_the_web_process_counts_them(
    reacted: tuple[str, dict[str, int]], redis_url: str, tmp_path: Path
) -> None:
    url, _ = reacted
    engine_for(url).dispose()
    env = web_environment(
        tmp_path / "var",
        redis_url,
        DATABASE_URL=url,
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
    )
    with WebProcess(env, tmp_path / "web.log") as web:
        answer = web.get("/metrics", basic_auth(USER, PASSWORD))
    assert answer.status == 200
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.body)
        for sample in family.samples
        if family.name in ("volfefe_reactions", "volfefe_significant_reactions")
    }
    statuses, significant = database_truth(url)
    assert found == {
        **{("volfefe_reactions", (("status", status),)): float(n) for status, n in statuses.items()},
        **{("volfefe_significant_reactions", (("window", w),)): float(n) for w, n in significant.items()},
    }
    assert sum(statuses.values()) == len(REACTIONS)


# -- the sample prices, and volfefe run computing the reactions -----------------------------------------

#: two shipped sample posts with planted moves (tools.sample_prices.PLANTED), and one without a date.
SAMPLE = [
    (
        "social",
        "ts-1001",
        "The Stock Market is at an ALL TIME HIGH. Jobs are booming!",
        "2025-01-21T14:02:00Z",
    ),
    (
        "news",
        "rt-2001",
        "Apple shares slide 4% after iPhone sales miss estimates in China",
        "2025-05-02T20:10:00Z",
    ),
    ("news", "nd-1", "Markets mixed in quiet trading", ""),
]


def write_posts(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "external_id", "text", "published_at"])
        writer.writerows(SAMPLE)
    return path


def sample_prices(out: Path, posts: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.sample_prices", "--out", str(out), "--posts", str(posts)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_sample_prices_cover_each_posts_baseline_and_windows_with_the_planted_moves(
    tmp_path: Path,
) -> None:
    posts = write_posts(tmp_path / "posts.csv")
    done = sample_prices(tmp_path / "bars.csv", posts)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines()[1:] == [
        "  planted +2% in SPY at 2025-01-21 14:30 UTC after ts-1001",  # 09:02 EST: the next open
        "  planted -4% in AAPL at 2025-05-05 13:30 UTC after rt-2001",  # Friday after the close: Monday's open
    ]
    bars: dict[str, dict[int, tuple[float, float]]] = {}
    with (tmp_path / "bars.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            moment = to_seconds(datetime.fromisoformat(row["timestamp"]))
            bars.setdefault(row["symbol"], {})[moment] = (float(row["open"]), float(row["close"]))
    assert set(bars) == {"SPY", "AAPL", "FXI"}  # rt-2001 names Apple and China
    calendar = trading_calendar()
    baseline = market_settings().baseline_days
    for symbol, published in (
        ("SPY", "2025-01-21T14:02:00Z"),
        ("AAPL", "2025-05-02T20:10:00Z"),
        ("FXI", "2025-05-02T20:10:00Z"),
    ):
        event = calendar.next_open_s(to_seconds(datetime.fromisoformat(published)) // 60 * 60)
        session = calendar.session_of_s(event)
        for index in range(session - baseline - 3, session + 3):  # every minute of every session needed
            minutes = range(calendar.opens[index], calendar.closes[index], 60)
            assert all(minute in bars[symbol] for minute in minutes), (symbol, calendar.sessions[index])
    for symbol, at, step in (("SPY", "2025-01-21T14:30:00Z", 0.02), ("AAPL", "2025-05-05T13:30:00Z", -0.04)):
        opened, closed = bars[symbol][to_seconds(datetime.fromisoformat(at))]
        assert closed / opened == pytest.approx(1 + step, abs=0.004)  # the step, and one minute's walk
    again = sample_prices(tmp_path / "again.csv", posts)
    assert again.returncode == 0
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "bars.csv").read_bytes()  # seeded


@pytest.mark.integration
def test_volfefe_run_computes_the_reactions_when_prices_are_stored(
    redis_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The README's flow in small: sample bars, ``volfefe import-prices``, ``volfefe run``: the run waits
    for the reactions too, and its report has them, with the planted move found."""
    database_url = f"sqlite:///{tmp_path / 'run.db'}"
    posts = write_posts(tmp_path / "posts.csv")
    assert sample_prices(tmp_path / "bars.csv", posts).returncode == 0
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "VOLFEFE_DATA_DIR": str(tmp_path / "var"),
        "FINBERT_MODEL": str(tiny_model_dir),
        "FINBERT_PRECISION": "fp32",
        "TORCH_THREADS": "1",
    }
    assert volfefe(["db", "upgrade"], env).returncode == 0
    imported = volfefe(["import-prices", str(tmp_path / "bars.csv"), "--resolution", "1m"], env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("inserted ")

    done = volfefe(["run", str(posts)], env, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("reactions (prices are stored): ") for line in lines), lines
    summary = next(line for line in lines if line.startswith("reactions of "))
    assert summary.startswith("reactions of 2 posts: computed 2 (ok 9), skipped 0, failed 0 in "), summary
    with session_scope(database_url) as session:
        rows = {
            (external, row.symbol, row.window): row
            for row, external in session.execute(
                select(Reaction, Content.external_id).join(Content, Content.id == Reaction.content_id)
            )
        }
    assert set(rows) == {
        (external, symbol, window)
        for external, symbols in (("ts-1001", ["SPY"]), ("rt-2001", ["AAPL", "FXI"]))
        for symbol in symbols
        for window in ("1h", "4h", "1d")
    }
    planted = rows[("ts-1001", "SPY", "1h")]
    assert planted.status == "ok" and planted.significance == "p<0.01"
    assert planted.abnormal_return == pytest.approx(0.02, abs=0.01) and planted.z_score > 3
    assert rows[("rt-2001", "AAPL", "1h")].abnormal_return < -0.02
    # The report that ends the run has them.
    assert "reactions 9 (post, asset, window) of 2 posts: ok 9; significant at p<0.05: " in done.stdout
    assert "Traceback" not in done.stderr
