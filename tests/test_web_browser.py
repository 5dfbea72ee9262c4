"""A real browser, logged in to the dashboard, cannot be made to change it from another site.

Headless Chromium (Debian package ``chromium``) holds the dashboard's credentials, as an operator's
browser does after logging in: it answers every basic-auth challenge from the dashboard's origin.
A page on another origin (a small http.server on another host name and port) auto-submits a form
POST to rq-dashboard's "empty the failed registry" endpoint: the failed job stays. The same browser,
on the dashboard's own page, empties it with one same-origin POST: the refusal is the origin check,
not missing credentials.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from config import DEFAULT_QUEUE_NAME
from services.redis_server import RedisServer
from tests.browser import Chromium, find_chromium
from tests.web_process import WebProcess, web_environment

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary: apt-get install -y chromium"),
]

RQ = str(Path(sys.executable).with_name("rq"))
USER = "operator"
PASSWORD = "browser-test-password"
EMPTY_FAILED = f"/rq/queue/{DEFAULT_QUEUE_NAME}/failed/empty"
#: seconds for a page load or a response in the browser.
PAGE_TIMEOUT = 30.0


def failed_count(connection: redis.Redis) -> int:
    return FailedJobRegistry(DEFAULT_QUEUE_NAME, connection=connection).get_job_count(cleanup=False)


@pytest.fixture
def attacker_site() -> Iterator[tuple[int, list[str]]]:
    """An http.server on 127.0.0.1 (reached as ``localhost``: another origin); its page is set by the test."""
    page: list[str] = [""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], page
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_site_cannot_empty_the_failed_registry(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, attacker_site: tuple[int, list[str]]
) -> None:
    connection = redis.Redis.from_url(redis_url)
    Queue(DEFAULT_QUEUE_NAME, connection=connection, serializer=JSONSerializer).enqueue("math.sqrt", -1)
    subprocess.run(
        [
            RQ,
            "worker",
            DEFAULT_QUEUE_NAME,
            "--burst",
            "-w",
            "rq.worker.SimpleWorker",
            "-S",
            "rq.serializers.JSONSerializer",
        ],
        env={**os.environ, "RQ_REDIS_URL": redis_url},
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert failed_count(connection) == 1
    attacker_port, page = attacker_site
    env = web_environment(
        tmp_path / "var", redis_url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD
    )
    assert CHROMIUM is not None

    with WebProcess(env, tmp_path / "web.log") as web, Chromium(CHROMIUM, tmp_path / "profile") as browser:
        target = f"{web.base}{EMPTY_FAILED}"
        page[0] = (
            f'<form id="f" method="post" action="{target}"><input name="x" value="1"></form>'
            '<script>document.getElementById("f").submit()</script>'
        )
        challenges: list[str] = []

        def provide_credentials(chromium: Chromium, event: dict[str, Any]) -> None:
            params = event["params"]
            challenges.append(params["request"]["url"])
            chromium.post(
                "Fetch.continueWithAuth",
                {
                    "requestId": params["requestId"],
                    "authChallengeResponse": {
                        "response": "ProvideCredentials",
                        "username": USER,
                        "password": PASSWORD,
                    },
                },
                session=event.get("sessionId"),
            )

        def let_through(chromium: Chromium, event: dict[str, Any]) -> None:
            chromium.post(
                "Fetch.continueRequest", {"requestId": event["params"]["requestId"]}, event.get("sessionId")
            )

        browser.on("Fetch.authRequired", provide_credentials)
        browser.on("Fetch.requestPaused", let_through)
        tab = browser.new_page()
        browser.send("Network.enable", session=tab)
        browser.send("Page.enable", session=tab)
        browser.send(
            "Fetch.enable",
            {"handleAuthRequests": True, "patterns": [{"urlPattern": f"{web.base}/*"}]},
            session=tab,
        )

        def response_to(url: str) -> Callable[[dict[str, Any]], bool]:
            def matches(event: dict[str, Any]) -> bool:
                return (
                    event.get("method") == "Network.responseReceived"
                    and event["params"]["response"]["url"] == url
                )

            return matches

        def loaded(event: dict[str, Any]) -> bool:
            return event.get("method") == "Page.loadEventFired" and event.get("sessionId") == tab

        # 1. The attack: another origin's page auto-submits the form with the browser's credentials.
        browser.send("Page.navigate", {"url": f"http://localhost:{attacker_port}/"}, session=tab)
        attacked = browser.wait_for_event(response_to(target), PAGE_TIMEOUT)
        assert attacked["params"]["response"]["status"] == 403
        assert challenges == [target]  # the browser did send the credentials: the origin check refused it
        assert failed_count(connection) == 1

        # 2. The control: the same browser, on the dashboard's own page, can empty it.
        since = browser.mark()
        browser.send("Page.navigate", {"url": f"{web.base}/rq/0/view/jobs"}, session=tab)
        browser.wait_for_event(loaded, PAGE_TIMEOUT, since=since)
        result = browser.send(
            "Runtime.evaluate",
            {
                "expression": f'fetch({json.dumps(EMPTY_FAILED)}, {{method: "POST"}}).then(r => r.status)',
                "awaitPromise": True,
            },
            session=tab,
        )
        assert result["result"]["value"] == 200
        assert failed_count(connection) == 0
    assert "refused POST" in web.log()
    connection.close()


def test_the_report_page_shows_what_the_market_did(redis_url: str, tmp_path: Path) -> None:
    """``/report`` with reactions stored, in the browser: the event-study chart drawn to scale (the
    positive posts' curve rises above the zero line, the negative posts' falls below it), the hit-rate
    table, the moves listed, and no script."""
    from db.migrate import upgrade
    from db.session import engine_for
    from tests.reaction_seed import REACTIONS, expected_moves, seed_reactions
    from tests.report_seed import POSTS, seed

    database_url = f"sqlite:///{tmp_path / 'volfefe.db'}"
    upgrade(database_url)
    ids = seed(database_url, POSTS)
    seed_reactions(database_url, ids)
    engine_for(database_url).dispose()
    env = web_environment(
        tmp_path / "var",
        redis_url,
        DATABASE_URL=database_url,
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
    )
    assert CHROMIUM is not None
    with WebProcess(env, tmp_path / "web.log") as web, Chromium(CHROMIUM, tmp_path / "profile") as browser:

        def log_in(chromium: Chromium, event: dict[str, Any]) -> None:
            chromium.post(
                "Fetch.continueWithAuth",
                {
                    "requestId": event["params"]["requestId"],
                    "authChallengeResponse": {
                        "response": "ProvideCredentials", "username": USER, "password": PASSWORD,
                    },
                },
                session=event.get("sessionId"),
            )  # fmt: skip

        def let_through(chromium: Chromium, event: dict[str, Any]) -> None:
            chromium.post(
                "Fetch.continueRequest", {"requestId": event["params"]["requestId"]}, event.get("sessionId")
            )

        browser.on("Fetch.authRequired", log_in)
        browser.on("Fetch.requestPaused", let_through)
        tab = browser.new_page()
        browser.send("Page.enable", session=tab)
        browser.send(
            "Fetch.enable",
            {"handleAuthRequests": True, "patterns": [{"urlPattern": f"{web.base}/*"}]},
            session=tab,
        )
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=tab,
        )
        since = browser.mark()
        browser.send("Page.navigate", {"url": f"{web.base}/report"}, session=tab)
        browser.wait_for_event(
            lambda e: e.get("method") == "Page.loadEventFired" and e.get("sessionId") == tab,
            PAGE_TIMEOUT,
            since,
        )
        measured = browser.send(
            "Runtime.evaluate",
            {
                "expression": """(() => {
                    const box = (id) => {
                        const r = document.getElementById(id).getBoundingClientRect();
                        return {top: r.top, bottom: r.bottom, width: r.width, height: r.height};
                    };
                    const chart = document.querySelector('figure[data-chart="event-study"] svg').getBoundingClientRect();
                    return {
                        heading: document.getElementById('reactions-heading').textContent,
                        chart: [chart.width, chart.height],
                        zero: box('event-study-zero'),
                        positive: box('event-study-positive'),
                        negative: box('event-study-negative'),
                        hitRates: [...document.querySelectorAll('#reaction-hit-rates tbody tr')].map(
                            (row) => row.innerText),
                        moves: [...document.querySelectorAll('#reaction-moves > li')].map(
                            (item) => item.dataset.contentId + ' ' + item.dataset.symbol + ' ' + item.dataset.window),
                        scripts: document.scripts.length,
                    };
                })()""",
                "returnByValue": True,
            },
            session=tab,
        )["result"]["value"]

    assert measured["heading"] == "What the market did" and measured["scripts"] == 0
    width, height = measured["chart"]
    assert width > 300 and height > 100
    zero = measured["zero"]["top"] + measured["zero"]["height"] / 2
    assert measured["positive"]["width"] > 100 and measured["positive"]["top"] < zero - 10  # rises above 0
    assert measured["negative"]["bottom"] > zero + 10  # falls below it
    assert [row.split("\t")[:3] for row in measured["hitRates"]] == [["1h", "6", "5"], ["1d", "3", "2"]]
    assert measured["moves"] == [
        f"{ids[external]} {symbol} {window}" for external, symbol, window in expected_moves(REACTIONS)
    ]
