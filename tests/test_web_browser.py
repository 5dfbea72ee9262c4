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
