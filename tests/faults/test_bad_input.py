"""Scenario 6: bad input, each with a clear outcome and nothing lost.

Posts that are empty, blank, markup or links only, a megabyte long, full of unpaired surrogates and NUL
bytes (through ``volfefe import`` of a JSON Lines file: PostgreSQL cannot store NUL), emoji, not
English, and ids with no row, all in one run with ordinary posts: every job finishes, classified or
skipped with the right reason. Then the command lines given bad arguments, an unreachable Redis or
database, or a FINBERT_MODEL that does not exist: one error line, a non-zero exit, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select

from db.models import Content
from db.session import session_scope
from jobs.outcomes import CLASSIFIED, CONTENT_NOT_FOUND, NO_TEXT_TO_CLASSIFY, SKIPPED
from jobs.queue import job_id_for
from services.redis_server import free_port
from tests.faults.conftest import FaultRun, post_texts
from tests.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
ORDINARY = 200
MEGABYTE = 1_000_000

#: external id -> (text as written to the JSON Lines file, the outcome expected for its job).
SPECIAL_POSTS: dict[str, tuple[str, tuple[str, str | None]]] = {
    "empty": ("", (SKIPPED, NO_TEXT_TO_CLASSIFY)),
    "whitespace": (" \n\t\r\u00a0\u2003 ", (SKIPPED, NO_TEXT_TO_CLASSIFY)),
    "markup": (
        "<div><br/><img src='chart.png'><script>buy()</script>&nbsp;</div>",
        (SKIPPED, NO_TEXT_TO_CLASSIFY),
    ),
    "links": (
        "https://example.com/a http://t.co/x1 www.example.org/path?q=1",
        (SKIPPED, NO_TEXT_TO_CLASSIFY),
    ),
    "nul-only": ("\x00\x00\x00", (SKIPPED, NO_TEXT_TO_CLASSIFY)),
    "megabyte": (("stocks rally on strong earnings " * (MEGABYTE // 32 + 1))[:MEGABYTE], (CLASSIFIED, None)),
    "surrogates-nul": ("shares \ud800 fall\x00 after weak \udfff guidance \udbff\x00", (CLASSIFIED, None)),
    "emoji": ("🚀📈💰 stocks to the moon 🌕", (CLASSIFIED, None)),
    "emoji-only": ("🚀📈💰🌕", (CLASSIFIED, None)),
    "german": ("Die Aktien steigen nach starken Quartalszahlen deutlich", (CLASSIFIED, None)),
    "chinese": ("股市在强劲的收益后大涨", (CLASSIFIED, None)),
    "markup-with-text": (
        "<p>Shares <b>plunge</b> after <a href='https://x.y'>weak guidance</a></p>",
        (CLASSIFIED, None),
    ),
}
MISSING_IDS = [999_999, 1_000_000]


def cli(
    args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_bad_posts_each_end_classified_or_skipped_with_the_reason(
    fault_run: FaultRun, record_metrics
) -> None:
    ordinary = fault_run.add_contents(post_texts(ORDINARY, seed=8))
    posts = fault_run.log_dir / "bad-posts.jsonl"
    # json.dumps escapes unpaired surrogates and NUL as \ud800 and \u0000: valid JSON, unstorable text.
    posts.write_text(
        "".join(
            json.dumps({"external_id": key, "text": text}) + "\n" for key, (text, _) in SPECIAL_POSTS.items()
        )
    )
    imported = cli([str(BIN / "volfefe"), "import", str(posts)], {"DATABASE_URL": fault_run.database_url})
    assert imported.returncode == 0 and f"inserted {len(SPECIAL_POSTS)}," in imported.stdout, imported
    with session_scope(fault_run.database_url) as session:
        stored = dict(
            session.execute(select(Content.external_id, Content.id).where(Content.source == "import")).all()
        )
        texts = session.scalars(select(Content.text).where(Content.source == "import")).all()
    assert set(stored) == set(SPECIAL_POSTS)
    for text in texts:  # sanitized: no NUL, and valid UTF-8 (encode raises on an unpaired surrogate)
        assert "\x00" not in text and len(text.encode("utf-8")) >= len(text)

    fault_run.enqueue([*ordinary, *stored.values(), *MISSING_IDS])
    fault_run.start_worker()
    total = ORDINARY + len(SPECIAL_POSTS)
    fault_run.wait_settled(total, 120, "every job to end")

    connection = fault_run.redis()
    outcomes = {}
    for key, content_id in [*stored.items(), *((f"missing-{i}", i) for i in MISSING_IDS)]:
        job = Job.fetch(
            job_id_for(content_id, fault_run.ident), connection=connection, serializer=JSONSerializer
        )
        result = job.return_value() or {}
        outcomes[key] = (job.get_status().value, result.get("status"), result.get("reason"))
    connection.close()
    expected = {key: ("finished", *outcome) for key, (_text, outcome) in SPECIAL_POSTS.items()}
    expected.update({f"missing-{i}": ("finished", SKIPPED, CONTENT_NOT_FOUND) for i in MISSING_IDS})
    result = fault_run.account()
    record_metrics(
        "6 bad input (jobs)",
        contents=total,
        faults=f"{len(SPECIAL_POSTS)} bad posts via `volfefe import` (empty, blank, markup, links, NUL, 1 MB, "
        f"surrogates, emoji, non-English) among {ORDINARY} ordinary ones, and {len(MISSING_IDS)} ids with no row",
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
        outcomes_as_expected=sum(outcomes[key] == expected[key] for key in expected),
        outcomes=len(expected),
    )
    assert outcomes == expected
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result
    assert result.classified == total - result.empty_text and result.skipped == result.empty_text, result


def unreachable_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def unreachable_database() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/volfefe"


def check_one_error_line(
    process: subprocess.CompletedProcess[str], expected_exit: int, fragment: str
) -> None:
    output = process.stdout + process.stderr
    assert "Traceback" not in output, output
    assert process.returncode == expected_exit, output
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0], output
    if expected_exit == 1:  # not argparse (which prints its usage first): the error is all there is
        assert lines == errors, output


ARGUMENT_ERRORS = [
    (["volfefe"], "the following arguments are required"),
    (["volfefe", "import"], "the following arguments are required: file"),
    (["volfefe", "frobnicate"], "invalid choice"),
    (["volfefe", "dashboard", "--port", "x"], "invalid int value"),
    (["volfefe", "run", "--workers", "0"], "invalid choice"),
    (["enqueue.py", "--ids", "1,x"], "is not a content id"),
    (["enqueue.py", "--limit", "0"], "is not a whole number >= 1"),
    (["enqueue.py", "--all", "--ids", "1"], "not allowed with argument"),
    (["scheduler.py", "--bogus"], "unrecognized arguments"),
]


def command(argv: list[str]) -> list[str]:
    if argv[0].endswith(".py"):
        return [sys.executable, str(ROOT / argv[0]), *argv[1:]]
    return [str(BIN / argv[0]), *argv[1:]]


@pytest.mark.parametrize(("argv", "fragment"), ARGUMENT_ERRORS, ids=[" ".join(a) for a, _ in ARGUMENT_ERRORS])
def test_bad_arguments_one_usage_error(argv: list[str], fragment: str) -> None:
    check_one_error_line(cli(command(argv), {}), 2, fragment)


def test_unreachable_servers_and_bad_settings_one_error_line(
    redis_url: str, tmp_path: Path, tiny_model_dir: Path, record_metrics
) -> None:
    good_db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    bad_redis, bad_db = unreachable_redis(), unreachable_database()
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"external_id": "1", "text": "stocks rally"}\n')
    cases = [
        (
            ["enqueue.py", "--ids", "1"],
            {"REDIS_URL": bad_redis, "DATABASE_URL": good_db},
            "cannot reach Redis",
        ),
        (["scheduler.py", "--once"], {"REDIS_URL": bad_redis, "DATABASE_URL": good_db}, "cannot reach Redis"),
        (["volfefe", "status"], {"REDIS_URL": bad_redis, "DATABASE_URL": good_db}, "cannot reach Redis"),
        (
            ["scheduler.py", "--once"],
            {"REDIS_URL": redis_url, "DATABASE_URL": bad_db},
            "cannot use the database",
        ),
        (
            ["enqueue.py", "--all"],
            {"REDIS_URL": redis_url, "DATABASE_URL": bad_db},
            "cannot use the database",
        ),
        (["volfefe", "import", str(posts)], {"DATABASE_URL": bad_db}, "cannot use the database"),
        (["volfefe", "report"], {"DATABASE_URL": bad_db}, "cannot use the database"),
        (["volfefe", "import", str(tmp_path / "none.jsonl")], {"DATABASE_URL": good_db}, "no such file"),
        (
            ["enqueue.py", "--ids", "1"],
            {"REDIS_URL": redis_url, "FINBERT_BATCH_SIZE": "many"},
            "FINBERT_BATCH_SIZE",
        ),
        (["volfefe", "classify"], {"FINBERT_MODEL": str(tmp_path / "no-model")}, "FINBERT_MODEL"),
        (["volfefe", "classify"], {"FINBERT_MODEL": "nobody/no-such-finbert"}, "FINBERT_MODEL"),
    ]
    for argv, env, fragment in cases:
        check_one_error_line(
            cli(command(argv), {**env, "HF_HUB_OFFLINE": "1"}, stdin="stocks rally\n"), 1, fragment
        )
    record_metrics("6 bad input (command lines)", cases=len(cases) + len(ARGUMENT_ERRORS) + 1, tracebacks=0)

    # A worker whose model does not exist exits non-zero, with one line that names FINBERT_MODEL.
    worker = WorkerProcess(redis_url, good_db, tmp_path / "no-model", tmp_path / "worker.log")
    worker.start(wait_ready=False)
    try:
        wait_for(lambda: not worker.running, 60, what="the worker with no model to exit")
    finally:
        worker.stop(timeout=5)
    log = worker.log()
    assert worker.process is not None and worker.process.returncode != 0, log
    assert "Traceback" not in log, log
    assert len([line for line in log.splitlines() if "FINBERT_MODEL" in line]) == 1, log
