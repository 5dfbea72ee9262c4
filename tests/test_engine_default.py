"""The default engine follows the CPU; OpenVINO's conversion is built on first use under a lock, and a
conversion that cannot be made leaves torch working with one warning line.

Unit tests: the default resolution per CPU flags, the remembered file hashes, the fallback and its
record (in process, the tiny model). Integration tests: two real workers on an empty cache (one
builds, the other waits, both load and classify), and a real worker whose conversion fails.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import config
from config import load_settings, resolve_engine
from db.migrate import upgrade
from db.models import Classification, Content
from db.session import session_scope
from model import engine_choice, openvino_engine
from model.classifier import configured_model_version
from model.warm import use_classifier, warm_classifier

VNNI_AMX = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
VNNI_ONLY = frozenset({"avx2", "avx512f", "avx512_vnni"})  # Cascade Lake: VNNI, no bf16
AVX_VNNI = frozenset({"avx2", "avx_vnni"})  # client cores: AVX-VNNI without AVX-512
AVX2 = frozenset({"avx2", "fma"})
TEXTS = [
    "Stocks rally on strong earnings",
    "Shares fall after weak guidance",
    "The Fed is expected to cut rates in the next quarter.",
    "Oil prices plunge as China demand drops",
]
WARNING = re.compile(r"warning: OpenVINO \w+ cannot run here \(.*\): running torch \w+ instead")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (VNNI_AMX, ("openvino", "int8", "bf16")),
        (ZEN4, ("openvino", "int8", "bf16")),
        (VNNI_ONLY, ("openvino", "int8", "fp32")),
        (AVX_VNNI, ("openvino", "int8", "fp32")),
        (AVX2, ("torch", "fp32", "fp32")),
        (frozenset({"avx512_bf16"}), ("torch", "bf16", "bf16")),
    ],
)
def test_as_measured_the_default_is_openvino_int8_where_vnni_or_amx_and_torch_elsewhere(
    flags: frozenset[str], expected
) -> None:
    """OpenVINO int8 keeps the stand-in's rule without SmoothQuant (config.OPENVINO_INT8_BY_DEFAULT);
    without VNNI it is no faster than torch fp32, so torch stays there."""
    assert config.OPENVINO_INT8_BY_DEFAULT is True
    assert resolve_engine(None, None, flags) == expected


@pytest.mark.parametrize(
    ("flags", "engine", "precision", "expected"),
    [
        # nothing set: the CPU decides the engine and the engine's precision
        (VNNI_AMX, None, None, ("openvino", "int8", "bf16")),
        (ZEN4, None, None, ("openvino", "int8", "bf16")),
        (VNNI_ONLY, None, None, ("openvino", "int8", "fp32")),
        (AVX_VNNI, None, None, ("openvino", "int8", "fp32")),
        (AVX2, None, None, ("torch", "fp32", "fp32")),
        (frozenset({"avx512_bf16"}), None, None, ("torch", "bf16", "bf16")),
        (frozenset(), None, None, ("torch", "fp32", "fp32")),
        # FINBERT_PRECISION alone keeps its old meaning: torch at that precision
        (VNNI_AMX, None, "fp32", ("torch", "fp32", "fp32")),
        (VNNI_AMX, None, "int8", ("torch", "int8", "int8")),
        # FINBERT_ENGINE alone: that engine at its default here
        (VNNI_AMX, "torch", None, ("torch", "bf16", "bf16")),
        (AVX2, "openvino", None, ("openvino", "fp32", "fp32")),
        (ZEN4, "openvino", None, ("openvino", "int8", "bf16")),
        # both set: as set; torch's fallback keeps the precision asked for
        (AVX2, "openvino", "int8", ("openvino", "int8", "int8")),
        (VNNI_AMX, "openvino", "bf16", ("openvino", "bf16", "bf16")),
    ],
)
def test_with_openvino_int8_by_default_the_engine_and_precision_follow_the_cpu(
    flags: frozenset[str], engine: str | None, precision: str | None, expected: tuple[str, str, str]
) -> None:
    """With OpenVINO int8 as the default where it pays (the switch in config)."""
    assert resolve_engine(engine, precision, flags, int8_by_default=True) == expected


def test_settings_read_the_engine_and_precision_as_resolved() -> None:
    nothing = load_settings({})
    assert (nothing.engine, nothing.precision) == (
        config.DEFAULT_ENGINE,
        config.default_precision(engine=config.DEFAULT_ENGINE),
    )
    assert nothing.torch_precision == config.DEFAULT_PRECISION
    alone = load_settings({"FINBERT_PRECISION": "fp32"})
    assert (alone.engine, alone.precision, alone.torch_precision) == ("torch", "fp32", "fp32")
    both = load_settings({"FINBERT_ENGINE": "openvino", "FINBERT_PRECISION": "fp32"})
    assert (both.engine, both.precision, both.torch_precision) == ("openvino", "fp32", "fp32")


def test_file_hashes_are_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    memo = tmp_path / "hashes"
    reads: list[Path] = []
    real = openvino_engine._file_sha256
    monkeypatch.setattr(openvino_engine, "_file_sha256", lambda path: reads.append(path) or real(path))

    first = openvino_engine.remembered_sha256(weights, memo)
    again = openvino_engine.remembered_sha256(weights, memo)
    assert first == again == real(weights)
    assert reads == [weights]  # the second start read the memo, not the weights

    weights.write_bytes(b"b" * 1000)  # same size, new bytes (and mtime): hashed again
    changed = openvino_engine.remembered_sha256(weights, memo)
    assert changed == real(weights) != first
    assert reads == [weights, weights]


def settings_for(model: Path, cache: Path, precision: str = "fp32", **extra: str) -> config.Settings:
    return load_settings(
        {
            "FINBERT_MODEL": str(model),
            "FINBERT_ENGINE": "openvino",
            "FINBERT_PRECISION": precision,
            "VOLFEFE_ENGINE_CACHE": str(cache),
            "TORCH_THREADS": "1",
            **extra,
        }
    )


@pytest.fixture
def fresh_warm_classifier():
    use_classifier(None)
    yield
    use_classifier(None)


def test_a_failed_conversion_leaves_torch_working_with_one_warning(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_warm_classifier,
) -> None:
    settings = settings_for(tiny_model_dir, tmp_path / "cache")
    attempts: list[str] = []

    def broken(*args, **kwargs):
        attempts.append("convert")
        raise RuntimeError("the converter met an unsupported operation\nand a second line")

    monkeypatch.setattr(openvino_engine, "_convert", broken)
    with caplog.at_level(logging.INFO, logger="rq.worker"):
        classifier = warm_classifier(settings)
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and WARNING.fullmatch(warnings[0]), warnings
    assert "unsupported operation" in warnings[0] and "second line" not in warnings[0]
    assert classifier.model_version == configured_model_version(str(tiny_model_dir), "fp32")  # torch's
    assert classifier.classify(TEXTS)[0].sentiment in classifier.labels
    # what reclassify --stale compares with is what this worker writes
    planned = engine_choice.planned_engine(settings)
    assert (planned.engine, planned.precision) == ("torch", "fp32")
    assert configured_model_version(str(tiny_model_dir), planned.precision, planned.engine) == (
        classifier.model_version
    )

    # The next worker does not convert again for minutes: it falls back at once, with one warning.
    use_classifier(None)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rq.worker"):
        again = warm_classifier(settings)
    assert attempts == ["convert"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: OpenVINO fp32 cannot run here (conversion failed: RuntimeError: the converter met"
    ), warnings
    assert again.model_version == classifier.model_version

    # `volfefe model build` tries again; once it succeeds the workers run OpenVINO.
    monkeypatch.undo()
    engine_choice.locked_build(settings, retry_failed=True)
    planned = engine_choice.planned_engine(settings)
    assert (planned.engine, planned.precision) == ("openvino", "fp32")
    use_classifier(None)
    assert warm_classifier(settings).model_version.endswith("+openvino-fp32")


def test_a_missing_openvino_extra_falls_back_to_torch_with_one_warning(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_warm_classifier,
) -> None:
    monkeypatch.setattr(engine_choice, "openvino_installed", lambda: False)
    settings = settings_for(tiny_model_dir, tmp_path / "cache", precision="int8")
    with caplog.at_level(logging.INFO, logger="rq.worker"):
        classifier = warm_classifier(settings)
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "dependencies this environment lacks: pip install -e ." in warnings[0], (
        warnings
    )
    assert classifier.model_version.endswith("+random-weights+int8")  # torch at the precision asked for
    assert engine_choice.planned_engine(settings).engine == "torch"
    assert not (tmp_path / "cache").exists()


def ready_version(log: str) -> str:
    match = re.search(r"Worker: model \S+ (\S+) loaded", log)
    assert match, log[-2000:]
    return match.group(1)


@pytest.mark.integration
def test_two_workers_on_an_empty_cache_one_builds_the_other_waits_both_classify(
    redis_url: str, sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from filelock import FileLock
    from redis import Redis

    from jobs.queue import enqueue_ids
    from tests.processes import WorkerProcess, wait_for

    upgrade(sqlite_url)
    cache = tmp_path / "cache"
    env = {"FINBERT_ENGINE": "openvino", "FINBERT_PRECISION": "int8", "VOLFEFE_ENGINE_CACHE": str(cache)}
    settings = settings_for(tiny_model_dir, cache, precision="int8")
    # Holding the build lock while both start makes "together" certain: both must wait for it.
    lock = FileLock(str(engine_choice.lock_path(settings)))
    lock.acquire()
    workers = [
        WorkerProcess(redis_url, sqlite_url, tiny_model_dir, tmp_path / f"worker-{n}.log", env=env)
        for n in (1, 2)
    ]
    try:
        for worker in workers:
            worker.start(wait_ready=False)
        for worker in workers:
            wait_for(
                lambda worker=worker: (
                    "waiting for another process to build" in worker.log() or not worker.running
                ),
                120,
                what="both workers to wait for the build lock",
            )
            assert worker.running, worker.log()[-2000:]
        assert not list(cache.glob("*/model.xml"))
        lock.release()
        for worker in workers:
            wait_for(
                lambda worker=worker: "Worker: model" in worker.log() or not worker.running,
                180,
                what="both workers to load the conversion",
            )
            assert worker.running, worker.log()[-2000:]
        logs = [worker.log() for worker in workers]
        assert sum("building the OpenVINO int8 conversion" in log for log in logs) == 1, logs
        assert len(list(cache.glob("*/model.xml"))) == 1
        expected = configured_model_version(str(tiny_model_dir), "int8", engine="openvino")
        assert expected.endswith("+openvino-int8")
        assert [ready_version(log) for log in logs] == [expected, expected]  # both loaded and ran it
        assert not any(WARNING.search(log) for log in logs)

        with session_scope(sqlite_url) as session:
            contents = [
                Content(source="t", external_id=str(i), text=text) for i, text in enumerate(TEXTS * 5)
            ]
            session.add_all(contents)
            session.flush()
            ids = [content.id for content in contents]
        connection = Redis.from_url(redis_url)
        try:
            enqueue_ids(connection, sqlite_url, ids)

            def stored() -> set[str]:
                with session_scope(sqlite_url) as session:
                    return {row.model_version for row in session.query(Classification)}

            def count() -> int:
                with session_scope(sqlite_url) as session:
                    return session.query(Classification).count()

            wait_for(lambda: count() == len(ids), 90, what="the classifications")
            assert stored() == {expected}
        finally:
            connection.close()
    finally:
        if lock.is_locked:
            lock.release()
        for worker in workers:
            worker.stop()


@pytest.mark.integration
def test_a_real_worker_whose_conversion_fails_runs_torch_with_one_warning(
    redis_url: str, sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from redis import Redis

    from jobs.queue import enqueue_ids
    from tests.processes import WorkerProcess, wait_for

    upgrade(sqlite_url)
    cache = tmp_path / "cache"
    env = {"FINBERT_ENGINE": "openvino", "FINBERT_PRECISION": "fp32", "VOLFEFE_ENGINE_CACHE": str(cache)}
    worker = WorkerProcess(
        redis_url,
        sqlite_url,
        tiny_model_dir,
        tmp_path / "worker.log",
        env=env,
        worker_class="tests.broken_conversion_worker.BrokenConversionWorker",
    )
    worker.start(wait_ready=False)
    connection = Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: "Worker: model" in worker.log() or not worker.running, 120, what="the worker's model"
        )
        assert worker.running, worker.log()[-2000:]
        log = worker.log()
        warnings = [line for line in log.splitlines() if "warning" in line.lower()]
        assert len(warnings) == 1 and WARNING.search(warnings[0]), warnings
        assert "the test's converter refuses" in warnings[0]
        torch_version = configured_model_version(str(tiny_model_dir), "fp32")
        assert ready_version(log) == torch_version
        # reclassify --stale compares with what the workers write
        settings = settings_for(tiny_model_dir, cache)
        planned = engine_choice.planned_engine(settings)
        assert (
            configured_model_version(str(tiny_model_dir), planned.precision, planned.engine) == torch_version
        )

        with session_scope(sqlite_url) as session:
            contents = [Content(source="t", external_id=str(i), text=text) for i, text in enumerate(TEXTS)]
            session.add_all(contents)
            session.flush()
            ids = [content.id for content in contents]
        enqueue_ids(connection, sqlite_url, ids)

        def stored() -> dict[int, str]:
            with session_scope(sqlite_url) as session:
                return {row.content_id: row.model_version for row in session.query(Classification)}

        wait_for(lambda: len(stored()) == len(ids), 90, what="the classifications")
        assert set(stored().values()) == {torch_version}
    finally:
        connection.close()
        worker.stop()
