"""The OpenVINO engine behind the same classifier: conversion cache, agreement with torch fp32, errors, pinning.

Tolerances, measured on the tiny model (random weights, initializer range 0.5, so activations are far
wider than a trained model's and quantization errors larger; the FinBERT-shaped figures are in bench/):

- fp32: the same graph run by another library; largest probability difference seen 3.3e-6 on these texts.
- bf16: an inference precision hint. On a CPU without bf16 OpenVINO runs f32 (then as fp32); with it,
  torch's own bf16 differs from fp32 by up to 0.089 on these texts, so the bound is 0.15.
- int8: NNCF post-training quantization calibrated on the shipped sample; on these texts the largest
  difference seen was 0.30 (mean 0.069, 17 of 20 labels equal), where torch's dynamic int8 reaches 0.67
  (mean 0.072). Bounds: largest 0.5, mean 0.12, at least 75% of labels equal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import config
from config import ConfigError, load_settings
from db.migrate import upgrade
from db.models import Content
from db.session import session_scope
from model import openvino_engine
from model.classifier import FinbertClassifier, ModelLoadError, Prediction, configured_model_version
from model.pinning import core_slots

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Stocks rally on strong earnings",
    "Shares fall after weak guidance",
    "The Fed is expected to cut rates in the next quarter.",
    "Oil prices plunge as China demand drops",
    "Apple beat revenue forecast; record high sales!",
    "Tesla stock crash: investors sell, bearish outlook",
    "inflation",
    "a",
    "Gold fell; the dollar rose.",
    "Bonds rallied as yields dropped to a three-month low",
    "The retailer cut 1,200 jobs and suspended its dividend.",
    "Quarterly revenue was unchanged at $4.1 billion.",
]
#: longer than the tiny model's 128 positions: read in several windows.
LONG_TEXTS = [
    "The market was strong. Investors are bullish on growth. " * 30,
    " ".join(f"Company {i} reports quarter sales of {i * 7} and a loss." for i in range(60)),
]
ALL_TEXTS = TEXTS + LONG_TEXTS
#: (largest probability difference, mean difference, share of labels equal) allowed per precision.
TOLERANCES = {"fp32": (1e-4, 1e-5, 1.0), "bf16": (0.15, 0.03, None), "int8": (0.5, 0.12, 0.75)}


def differences(reference: list[Prediction], other: list[Prediction]) -> list[float]:
    return [
        max(abs(ref.raw_scores[label] - item.raw_scores[label]) for label in ref.raw_scores)
        for ref, item in zip(reference, other, strict=True)
    ]


def margin(prediction: Prediction) -> float:
    top, second = sorted(prediction.raw_scores.values(), reverse=True)[:2]
    return top - second


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def builds(tiny_model_dir: Path, engine_cache: Path) -> dict[str, openvino_engine.Build]:
    """Every precision converted once for the module (int8 calibrated on the shipped sample)."""
    return {
        precision: openvino_engine.build(str(tiny_model_dir), precision, 512, engine_cache)
        for precision in ("fp32", "bf16", "int8")
    }


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> list[Prediction]:
    return FinbertClassifier.load(str(tiny_model_dir), "fp32", batch_size=4).classify(ALL_TEXTS)


def load(model: Path, precision: str, cache: Path, **options) -> FinbertClassifier:
    return FinbertClassifier.load(
        str(model), precision, batch_size=4, engine="openvino", engine_cache=cache, **options
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_every_precision_classifies_like_torch_fp32_within_its_tolerance(
    tiny_model_dir: Path, engine_cache: Path, builds, reference: list[Prediction], precision: str
) -> None:
    assert builds[precision].converted
    classifier = load(tiny_model_dir, precision, engine_cache, threads=1)
    # what OpenVINO computes in: f32 for fp32, and for bf16 where the CPU has no bf16 instructions
    assert classifier.engine.inference_precision in (("f32",) if precision == "fp32" else ("f32", "bf16"))
    predictions = classifier.classify(ALL_TEXTS)
    largest, mean, agreement = TOLERANCES[precision]
    diffs = differences(reference, predictions)
    assert max(diffs) <= largest
    assert sum(diffs) / len(diffs) <= mean
    same = [ref.sentiment == item.sentiment for ref, item in zip(reference, predictions, strict=True)]
    if agreement is not None:
        assert sum(same) / len(same) >= agreement
    # a label can only flip where fp32's top two are within twice the largest difference
    for ref, equal in zip(reference, same, strict=True):
        assert equal or margin(ref) <= 2 * largest
    for ref, item in zip(reference, predictions, strict=True):
        assert item.sentiment in classifier.labels
        assert abs(sum(item.raw_scores.values()) - 1) < 1e-4
        assert (item.tokens, item.windows) == (ref.tokens, ref.windows)


def test_model_version_names_engine_and_precision(tiny_model_dir: Path, engine_cache: Path, builds) -> None:
    classifier = load(tiny_model_dir, "int8", engine_cache)
    assert classifier.model_version.endswith("+random-weights+openvino-int8")
    assert classifier.model_version == configured_model_version(
        str(tiny_model_dir), "int8", engine="openvino"
    )
    # torch keeps the format stored versions were written in
    assert configured_model_version(str(tiny_model_dir), "int8").endswith("+random-weights+int8")


def test_long_texts_are_read_in_windows(
    tiny_model_dir: Path, engine_cache: Path, builds, reference: list[Prediction]
) -> None:
    classifier = load(tiny_model_dir, "fp32", engine_cache)
    predictions = classifier.classify(LONG_TEXTS)
    for ref, item in zip(reference[len(TEXTS) :], predictions, strict=True):
        assert item.windows > 1
        assert item.windows == ref.windows
        assert item.sentiment == ref.sentiment


def test_the_build_records_its_key_parts_and_calibration(builds, tiny_model_dir: Path) -> None:
    record = builds["int8"].record
    assert record["parts"]["precision"] == "int8"
    assert record["parts"]["versions"]["openvino"]
    assert record["calibration"]["source"] == "shipped sample"
    assert record["calibration"]["texts"] >= 250
    names = {item["name"] for item in record["parts"]["model"]["files"]}
    assert "config.json" in names
    assert names & {"model.safetensors", "pytorch_model.bin"}
    assert builds["fp32"].record["calibration"] is None
    assert len({build.folder for build in builds.values()}) == 3  # one folder per precision


def test_a_second_build_reuses_the_cached_conversion(
    tiny_model_dir: Path, engine_cache: Path, builds
) -> None:
    first = builds["fp32"]
    before = (first.folder / openvino_engine.IR_FILE).stat().st_mtime_ns
    again = openvino_engine.build(str(tiny_model_dir), "fp32", 512, engine_cache)
    assert not again.converted
    assert again.folder == first.folder
    assert (again.folder / openvino_engine.IR_FILE).stat().st_mtime_ns == before
    assert again.record["built_at"] == first.record["built_at"]


def test_a_changed_model_file_is_converted_again_and_loaded(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cache = tmp_path / "cache"
    first = openvino_engine.build(str(model), "fp32", 512, cache)
    config = json.loads((model / "config.json").read_text())
    config["volfefe_note"] = "edited"  # a different config file: a different model identity
    (model / "config.json").write_text(json.dumps(config))
    assert openvino_engine.built_folder(str(model), "fp32", 512, cache) is None
    second = openvino_engine.build(str(model), "fp32", 512, cache)
    assert second.converted
    assert second.folder != first.folder
    assert openvino_engine.built_folder(str(model), "fp32", 512, cache) == second.folder
    assert load(model, "fp32", cache).classify(["Stocks rally"])[0].sentiment


def test_loading_without_a_build_names_the_build_command(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The library call loads what is built; a worker builds first (model.engine_choice)."""
    with pytest.raises(ModelLoadError) as raised:
        load(tiny_model_dir, "int8", tmp_path / "empty-cache")
    message = str(raised.value)
    assert "\n" not in message
    assert "volfefe model build" in message
    assert "int8" in message


def test_a_missing_openvino_extra_is_one_line(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    expected = "FINBERT_ENGINE=openvino needs openvino and nncf, dependencies this environment lacks: pip install -e ."
    with pytest.raises(ModelLoadError) as raised:
        load(tiny_model_dir, "fp32", tmp_path)
    assert str(raised.value) == expected
    with pytest.raises(ModelLoadError) as raised:
        openvino_engine.build(str(tiny_model_dir), "fp32", 512, tmp_path)
    assert str(raised.value) == expected


def test_engine_setting() -> None:
    assert load_settings({}).engine == config.DEFAULT_ENGINE  # follows the CPU (tests/test_engine_default.py)
    assert load_settings({"FINBERT_PRECISION": "bf16"}).engine == "torch"
    assert load_settings({"FINBERT_ENGINE": " OpenVINO "}).engine == "openvino"
    assert load_settings({"VOLFEFE_ENGINE_CACHE": "/x/y"}).engine_cache == Path("/x/y")
    with pytest.raises(ConfigError, match="FINBERT_ENGINE='onnx' must be one of torch, openvino"):
        load_settings({"FINBERT_ENGINE": "onnx"})


def cli_env(model: Path, cache: Path, precision: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FINBERT_", "VOLFEFE_"))}
    env.update(
        FINBERT_MODEL=str(model),
        FINBERT_ENGINE="openvino",
        FINBERT_PRECISION=precision,
        VOLFEFE_ENGINE_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


def volfefe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_build_command_prints_the_folder_and_is_cached_the_second_time(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    env = cli_env(tiny_model_dir, tmp_path / "cache", "fp32")
    first = volfefe(["model", "build"], env)
    assert first.returncode == 0, first.stderr
    folder = Path(first.stdout.strip().rsplit(": ", 1)[1])
    assert first.stdout.startswith("built openvino fp32 in ")
    assert (folder / "model.xml").is_file()
    assert folder.parent == tmp_path / "cache"
    second = volfefe(["model", "build"], env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("already built openvino fp32")
    assert second.stdout.strip().endswith(str(folder))


def test_the_build_command_calibrates_on_the_users_contents(
    tiny_model_dir: Path, tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    texts = [f"<p>Company {i} said quarterly revenue rose {i}% on demand.</p>" for i in range(40)]
    with session_scope(sqlite_url) as session:
        session.add_all(Content(source="test", external_id=str(i), text=text) for i, text in enumerate(texts))
        session.add(Content(source="test", external_id="empty", text="<p> </p>"))  # no visible text
    env = cli_env(tiny_model_dir, tmp_path / "cache", "int8", DATABASE_URL=sqlite_url)
    result = volfefe(["model", "build", "--calibrate-from-db"], env)
    assert result.returncode == 0, result.stderr
    assert "calibrated on 40 texts (database)" in result.stdout
    folder = Path(result.stdout.strip().rsplit(": ", 1)[1])
    record = json.loads((folder / "build.json").read_text())
    assert record["calibration"]["source"] == "database"
    assert record["calibration"]["texts"] == 40


def test_calibrating_on_an_empty_database_is_one_line(
    tiny_model_dir: Path, tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    env = cli_env(tiny_model_dir, tmp_path / "cache", "int8", DATABASE_URL=sqlite_url)
    result = volfefe(["model", "build", "--calibrate-from-db"], env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no contents with text to calibrate on" in result.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/model.xml"))


def test_core_slots_are_disjoint() -> None:
    assert core_slots([0, 1, 2, 3], 2) == [[0, 1], [2, 3]]
    assert core_slots([0, 1], 2) == [[0], [1]]
    assert core_slots([0, 1, 2], 2) == [[0], [1]]
    assert core_slots([0], 3) == [[0]]


CLAIM = """
import sys
from pathlib import Path
import os
from model.pinning import claim_cores
cores = claim_cores(int(sys.argv[1]), Path(sys.argv[2]))
print(sorted(os.sched_getaffinity(0)) if cores else "unpinned", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def claimers(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_two_pinned_processes_get_disjoint_cores(tmp_path: Path, claimers) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("one core: nothing to split")
    processes = 2
    outputs = []
    for _ in range(processes + 1):  # one more than there are slots
        process = subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(processes), str(tmp_path / "locks")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        claimers.append(process)
        assert process.stdout is not None
        outputs.append(process.stdout.readline().strip())
    slots = [json.loads(line) for line in outputs[:-1]]
    assert not set(slots[0]) & set(slots[1])
    assert len(slots[0]) == len(slots[1]) == len(cores) // 2
    assert set(slots[0]) | set(slots[1]) <= set(cores)
    assert outputs[-1] == "unpinned"  # every slot is held: the extra process runs unpinned
    # a process that ends gives its cores back
    claimers[0].communicate("done\n", timeout=10)
    late = subprocess.run(
        [sys.executable, "-c", CLAIM, str(processes), str(tmp_path / "locks")],
        cwd=ROOT,
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(late.stdout.strip()) == slots[0]


@pytest.mark.integration
def test_a_real_worker_classifies_through_a_conversion_built_beforehand(
    redis_url: str, sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Built by `volfefe model build`'s code first; a worker on an empty cache builds it itself
    (tests/test_engine_default.py)."""
    from redis import Redis

    from db.models import Classification
    from jobs.queue import enqueue_ids
    from tests.processes import READY_LINE, WorkerProcess, wait_for

    upgrade(sqlite_url)
    settings_ = {"FINBERT_ENGINE": "openvino", "VOLFEFE_ENGINE_CACHE": str(tmp_path / "cache")}
    openvino_engine.build(str(tiny_model_dir), "fp32", 512, tmp_path / "cache")
    with session_scope(sqlite_url) as session:
        contents = [Content(source="t", external_id=str(i), text=text) for i, text in enumerate(TEXTS)]
        session.add_all(contents)
        session.flush()
        ids = [content.id for content in contents]
    worker = WorkerProcess(redis_url, sqlite_url, tiny_model_dir, tmp_path / "worker.log", env=settings_)
    worker.start(wait_ready=False)
    connection = Redis.from_url(redis_url)
    try:
        wait_for(lambda: READY_LINE in worker.log() or not worker.running, 90, what="the worker's model")
        assert worker.running, worker.log()[-2000:]
        assert "building the OpenVINO" not in worker.log()  # found cached
        enqueue_ids(connection, sqlite_url, ids)

        def stored() -> dict[int, str]:
            with session_scope(sqlite_url) as session:
                return {row.content_id: row.model_version for row in session.query(Classification)}

        wait_for(lambda: len(stored()) == len(ids), 90, what="the classifications")
        expected = configured_model_version(str(tiny_model_dir), "fp32", engine="openvino")
        assert expected.endswith("+openvino-fp32")
        assert set(stored().values()) == {expected}
        # the conversion holds the tokenizer: the worker never loaded torch (~200 MB of its memory)
        mapped = Path(f"/proc/{worker.pid}/maps").read_text()
        assert "openvino" in mapped and "libtorch" not in mapped
    finally:
        connection.close()
        worker.stop()
