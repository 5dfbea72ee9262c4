"""config.load_settings: documented defaults, and a ConfigError naming the variable on a bad value."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

import config
from config import ConfigError, load_settings


def test_defaults_with_nothing_set() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite:///volfefe.db" == config.DEFAULT_DATABASE_URL
    assert settings.redis_url is None
    assert settings.model == "yiyanghkust/finbert-tone"
    assert settings.engine == config.default_engine()
    assert settings.precision == config.default_precision(engine=settings.engine)
    assert settings.batch_size == 32
    assert settings.batch_wait_ms == 2.0
    assert settings.max_length == 512
    assert settings.labels is None
    assert settings.torch_threads == max(1, os.cpu_count() or 1)
    assert settings.data_dir == Path("var")


def test_blank_values_mean_the_default() -> None:
    blank = {
        name: "  "
        for name in (
            "DATABASE_URL",
            "REDIS_URL",
            "FINBERT_MODEL",
            "FINBERT_PRECISION",
            "FINBERT_BATCH_SIZE",
            "FINBERT_BATCH_WAIT_MS",
            "FINBERT_MAX_LENGTH",
            "FINBERT_LABELS",
            "TORCH_THREADS",
            "WORKER_PROCESSES",
            "VOLFEFE_DATA_DIR",
        )
    }
    assert load_settings(blank) == load_settings({})


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": " postgresql+psycopg://u@h/db ",
            "REDIS_URL": "redis://127.0.0.1:6390/1",
            "FINBERT_MODEL": "/models/finbert",
            "FINBERT_PRECISION": " INT8 ",
            "FINBERT_BATCH_SIZE": "8",
            "FINBERT_BATCH_WAIT_MS": "0",
            "FINBERT_MAX_LENGTH": "256",
            "FINBERT_LABELS": "Neutral, positive ,NEGATIVE",
            "TORCH_THREADS": "3",
            "VOLFEFE_DATA_DIR": "/srv/volfefe",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.redis_url == "redis://127.0.0.1:6390/1"
    assert settings.model == "/models/finbert"
    assert settings.precision == "int8"
    assert settings.batch_size == 8
    assert settings.batch_wait_ms == 0.0
    assert settings.max_length == 256
    assert settings.labels == ("neutral", "positive", "negative")
    assert settings.torch_threads == 3
    assert settings.data_dir == Path("/srv/volfefe")


def test_worker_processes_divides_the_default_threads() -> None:
    cores = os.cpu_count() or 1
    assert load_settings({"WORKER_PROCESSES": "2"}).torch_threads == max(1, cores // 2)
    assert load_settings({"WORKER_PROCESSES": str(cores * 4)}).torch_threads == 1
    # An explicit TORCH_THREADS wins.
    assert load_settings({"WORKER_PROCESSES": "2", "TORCH_THREADS": "5"}).torch_threads == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FINBERT_PRECISION", "fp16"),
        ("FINBERT_PRECISION", "int4"),
        ("FINBERT_BATCH_SIZE", "abc"),
        ("FINBERT_BATCH_SIZE", "0"),
        ("FINBERT_BATCH_SIZE", "-4"),
        ("FINBERT_BATCH_SIZE", "2.5"),
        ("FINBERT_BATCH_WAIT_MS", "soon"),
        ("FINBERT_BATCH_WAIT_MS", "-1"),
        ("FINBERT_MAX_LENGTH", "0"),
        ("FINBERT_MAX_LENGTH", "long"),
        ("TORCH_THREADS", "0"),
        ("TORCH_THREADS", "many"),
        ("WORKER_PROCESSES", "0"),
        ("WORKER_PROCESSES", "two"),
    ],
)
def test_bad_value_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert name in message
    assert value.strip().lower() in message.lower()
    assert isinstance(caught.value, ValueError)


def test_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    config.settings.cache_clear()
    try:
        monkeypatch.setenv("FINBERT_BATCH_SIZE", "7")
        first = config.settings()
        assert first.batch_size == 7
        monkeypatch.setenv("FINBERT_BATCH_SIZE", "9")
        assert config.settings() is first
        config.settings.cache_clear()
        assert config.settings().batch_size == 9
    finally:
        config.settings.cache_clear()


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_batch_wait_must_be_finite(raw: str) -> None:
    with pytest.raises(ConfigError, match="FINBERT_BATCH_WAIT_MS"):
        load_settings({"FINBERT_BATCH_WAIT_MS": raw})


@pytest.mark.parametrize(
    ("url", "says"),
    [("garbage", "not a database URL"), ("mysql://user@host/db", "mysql"), ("sqlite", "not a database URL")],
)
def test_database_url_must_be_a_sqlite_or_postgresql_url(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        load_settings({"DATABASE_URL": url})
    assert "\n" not in str(caught.value)


def test_database_and_redis_urls_stay_out_of_repr() -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql+psycopg://u:secret-db@h/d", "REDIS_URL": "redis://:secret-redis@h/0"}
    )
    assert "secret" not in repr(settings)
    assert settings.database_url.endswith("@h/d")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
        ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),
        ({"avx2", "avx512f", "avx512_vnni"}, "fp32"),  # AVX-512 without bf16: torch emulates it
        ({"avx2"}, "fp32"),
        (set(), "fp32"),
    ],
)
def test_the_default_precision_follows_the_cpu(flags: set[str], expected: str) -> None:
    assert config.default_precision(frozenset(flags)) == expected


def test_this_machines_flags_are_read() -> None:
    flags = config.cpu_flags()
    if Path("/proc/cpuinfo").exists() and platform.machine() == "x86_64":
        assert "fpu" in flags  # every x86-64 CPU has it
    assert config.default_precision(flags) == config.DEFAULT_PRECISION


# -- VOLFEFE_MODELS ---------------------------------------------------------------------------------


def test_the_default_is_finbert_model_alone() -> None:
    default = load_settings({})
    assert default.models == (config.ModelSpec("finbert", "yiyanghkust/finbert-tone", None, 1.0),)
    mine = load_settings({"FINBERT_MODEL": "/models/tone", "FINBERT_LABELS": "neutral,positive,negative"})
    assert mine.models == (
        config.ModelSpec("finbert", "/models/tone", ("neutral", "positive", "negative"), 1.0),
    )
    assert mine.model_names == ("finbert",)


def test_models_as_name_equals_source() -> None:
    settings = load_settings({"VOLFEFE_MODELS": "tone=yiyanghkust/finbert-tone, prosus=/models/prosus"})
    assert settings.models == (
        config.ModelSpec("tone", "yiyanghkust/finbert-tone"),
        config.ModelSpec("prosus", "/models/prosus"),
    )


def test_models_with_labels_and_weights_and_a_bare_finbert() -> None:
    settings = load_settings(
        {
            "FINBERT_MODEL": "/models/tone",
            "VOLFEFE_MODELS": "finbert;weight=2,\n roberta=cardiffnlp/twitter-roberta-base-sentiment;"
            "labels=Negative/neutral/positive;weight=0.5",
        }
    )
    assert settings.models == (
        config.ModelSpec("finbert", "/models/tone", None, 2.0),
        config.ModelSpec(
            "roberta", "cardiffnlp/twitter-roberta-base-sentiment", ("negative", "neutral", "positive"), 0.5
        ),
    )
    assert settings.model_spec("roberta").weight == 0.5


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("Tone=x", "is not a model name"),
        ("a=x,a=y", "names a more than once"),
        ("a=", "has no source"),
        ("a=x;weight=0", "must be a number above 0"),
        ("a=x;weight=heavy", "is not a number"),
        ("a=x;labels=positive", "must name each label"),
        ("a=x;colour=red", "unknown option 'colour'"),
        ("a,b", "only one entry may stand for FINBERT_MODEL"),
    ],
)
def test_bad_models_are_one_line_naming_the_setting(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"VOLFEFE_MODELS": value})
    message = str(caught.value)
    assert fragment in message and "VOLFEFE_MODELS" in message and "\n" not in message


def test_an_unknown_model_name_says_which_are_configured() -> None:
    settings = load_settings({"VOLFEFE_MODELS": "a=x,b=y"})
    with pytest.raises(ConfigError, match=r"no model 'c' is configured \(VOLFEFE_MODELS: a, b\)"):
        settings.model_spec("c")


def test_consensus_and_backfill_settings() -> None:
    assert load_settings({}).ambiguous_confidence == config.DEFAULT_AMBIGUOUS_CONFIDENCE
    assert load_settings({}).backfill_per_sweep == config.DEFAULT_BACKFILL_PER_SWEEP
    chosen = load_settings({"VOLFEFE_AMBIGUOUS_CONFIDENCE": "0.7", "VOLFEFE_BACKFILL_PER_SWEEP": "0"})
    assert (chosen.ambiguous_confidence, chosen.backfill_per_sweep) == (0.7, 0)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_settings({"VOLFEFE_AMBIGUOUS_CONFIDENCE": "1.5"})
    with pytest.raises(ConfigError, match="must not be negative"):
        load_settings({"VOLFEFE_BACKFILL_PER_SWEEP": "-1"})
