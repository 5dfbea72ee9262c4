"""An OpenVINO worker without transformers or torch: the tokenizer and the model's facts saved with the
conversion (``model.saved_tokenizer``) read the same ids and give the same predictions, a conversion
without them still loads, a hub id's revision is read from the local cache, and a real worker's
process never maps torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model import openvino_engine, saved_tokenizer
from model.classifier import FinbertClassifier, _load_pretrained, pad_batch
from model.engines import ModelLoadError

ROOT = Path(__file__).resolve().parent.parent
#: texts a tokenizer may read differently: accents, emoji, CJK, symbols, tickers, long words, spaces.
TEXTS = [
    "Stocks rally on strong earnings",
    "$AAPL +3.2% after-hours; CEO: “record quarter”",
    "Café Société’s débâcle — naïve coöperation",
    "Ölpreis fällt, Börse schließt tiefer",
    "株価は下落した。円高が進む",
    "Тесла падает на 5%",
    "🚀🚀 to the moon 📉 or not",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "  spaces\tand\nnewlines  ",
    "a",
    "UNICODE\u200bZERO\u00a0WIDTH",
]


@pytest.fixture(scope="module")
def fp32_build(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> openvino_engine.Build:
    return openvino_engine.build(str(tiny_model_dir), "fp32", 512, tmp_path_factory.mktemp("engines"))


def test_the_saved_tokenizer_reads_the_ids_transformers_reads(tiny_model_dir: Path, fp32_build) -> None:
    reference, _config = _load_pretrained(str(tiny_model_dir), weights=False)
    loaded = saved_tokenizer.load(fp32_build.folder)
    assert loaded is not None
    tokenizer, _facts = loaded

    assert tokenizer(TEXTS)["input_ids"] == reference(TEXTS, truncation=False)["input_ids"]
    assert (
        tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
        == reference(TEXTS, add_special_tokens=False)["input_ids"]
    )
    assert (
        tokenizer("a", add_special_tokens=False)["input_ids"]
        == reference("a", add_special_tokens=False)["input_ids"]
    )
    assert tokenizer.pad_token_id == reference.pad_token_id
    long_text = "The market was strong. " * 200  # past every length: never truncated
    assert len(tokenizer([long_text])["input_ids"][0]) == len(reference([long_text])["input_ids"][0]) > 512


def test_the_saved_facts_are_the_configs(tiny_model_dir: Path, fp32_build) -> None:
    _tokenizer, config = _load_pretrained(str(tiny_model_dir), weights=False)
    loaded = saved_tokenizer.load(fp32_build.folder)
    assert loaded is not None
    facts = loaded[1]

    assert facts.id2label == {int(index): label for index, label in config.id2label.items()}
    assert facts.max_position_embeddings == config.max_position_embeddings == 128
    assert facts.revision is None  # a folder
    assert facts.random_weights is True  # tools.random_model marks its models
    raw = json.loads((fp32_build.folder / saved_tokenizer.FACTS_FILE).read_text())
    assert set(raw) == {"id2label", "max_position_embeddings", "revision", "random_weights", "pad_token_id"}


#: run in its own process: it loads two OpenVINO classifiers and drops them, which left the pytest
#: process on a freed signal stack until engines were kept for life (model.openvino_engine._LIVE_ENGINES,
#: and the test below); a process of its own keeps the session's other tests out of its way.
SAME_PREDICTIONS = """
import shutil, sys
from dataclasses import replace
from pathlib import Path
from model import saved_tokenizer
from model.classifier import FinbertClassifier

model, cache, bare_cache, folder_name, texts = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5:]
saved = FinbertClassifier.load(model, "fp32", batch_size=4, engine="openvino", engine_cache=cache)
assert isinstance(saved.tokenizer, saved_tokenizer.SavedTokenizer), type(saved.tokenizer)
shutil.copytree(cache, bare_cache)
folder = bare_cache / folder_name
(folder / saved_tokenizer.TOKENIZER_FILE).unlink()
(folder / saved_tokenizer.FACTS_FILE).unlink()
assert saved_tokenizer.load(folder) is None
bare = FinbertClassifier.load(model, "fp32", batch_size=4, engine="openvino", engine_cache=bare_cache)
assert not isinstance(bare.tokenizer, saved_tokenizer.SavedTokenizer), type(bare.tokenizer)
untimed = [replace(prediction, seconds=0.0) for prediction in saved.classify(texts)]
assert untimed == [replace(prediction, seconds=0.0) for prediction in bare.classify(texts)]
assert any(prediction.windows > 1 for prediction in untimed)
assert saved.model_version == bare.model_version, (saved.model_version, bare.model_version)
assert saved.labels == bare.labels
print("same", len(untimed))
"""


def test_predictions_are_the_same_with_the_saved_tokenizer_or_without_it(
    tiny_model_dir: Path, fp32_build, tmp_path: Path
) -> None:
    """A conversion built before the tokenizer was saved with it (or with a tokenizer that has no fast
    version) loads with transformers' tokenizer: both give the same predictions and version."""
    texts = [*TEXTS, "The market was strong. Investors are bullish on growth. " * 30]
    arguments = [str(tiny_model_dir), str(fp32_build.folder.parent), str(tmp_path / "engines")]
    done = subprocess.run(
        [sys.executable, "-c", SAME_PREDICTIONS, *arguments, fp32_build.folder.name, *texts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == f"same {len(texts)}"


def test_an_openvino_classifier_imports_neither_transformers_nor_torch(
    tiny_model_dir: Path, fp32_build
) -> None:
    script = (
        "import sys\n"
        "from model.classifier import FinbertClassifier\n"
        f"c = FinbertClassifier.load({str(tiny_model_dir)!r}, 'fp32', engine='openvino', "
        f"engine_cache=__import__('pathlib').Path({str(fp32_build.folder.parent)!r}))\n"
        "print(c.classify(['Stocks rally on strong earnings'])[0].sentiment)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sentiment, imported = done.stdout.strip().splitlines()[-2:]
    assert sentiment in {"positive", "negative", "neutral"}
    assert imported == "[]"


def test_a_hub_models_revision_is_read_from_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As transformers reads ``_commit_hash``: the snapshot folder config.json resolves to."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--finbert"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    assert openvino_engine.model_identity("someorg/finbert") == {
        "hub_id": "someorg/finbert",
        "revision": commit,
    }
    with pytest.raises(ModelLoadError) as raised:
        openvino_engine.model_identity("someorg/not-downloaded")
    assert str(raised.value) == (
        "cannot convert FINBERT_MODEL='someorg/not-downloaded': it is neither a folder nor in the local model cache"
    )


@pytest.mark.parametrize(
    ("lengths", "step", "limit", "width"),
    [
        ([3, 5], 1, None, 5),
        ([3, 5], 8, None, 8),
        ([8, 2], 8, None, 8),
        ([9], 8, None, 16),
        ([125, 3], 8, 128, 128),
        ([126], 8, 126, 126),  # never past the model's positions
        ([127], 8, 126, 127),  # nor below the longest (the caller keeps windows within the limit)
    ],
)
def test_a_pass_is_padded_to_the_width_step_within_the_models_positions(
    lengths: list[int], step: int, limit: int | None, width: int
) -> None:
    rows = [list(range(1, length + 1)) for length in lengths]
    ids, mask = pad_batch(rows, 0, step, limit)

    assert ids.shape == mask.shape == (len(rows), width)
    assert mask.sum(axis=1).tolist() == lengths
    for row, tokens in zip(ids.tolist(), rows, strict=True):
        assert row[: len(tokens)] == tokens and set(row[len(tokens) :]) <= {0}


def test_openvino_passes_are_a_multiple_of_its_width_step(tiny_model_dir: Path, fp32_build) -> None:
    classifier = FinbertClassifier.load(
        str(tiny_model_dir), "fp32", batch_size=4, engine="openvino", engine_cache=fp32_build.folder.parent
    )
    widths: list[int] = []
    forward = classifier.engine.forward

    def recording(input_ids, attention_mask):
        widths.append(input_ids.shape[1])
        return forward(input_ids, attention_mask)

    classifier.engine.forward = recording  # type: ignore[method-assign]
    classifier.classify(TEXTS)

    assert openvino_engine.WIDTH_STEP == 8
    assert widths and all(width % 8 == 0 for width in widths), widths


#: two OpenVINO classifiers made, then dropped in the order they were made, then a signal handled.
SIGNAL_AFTER_TWO_ENGINES = """
import gc, signal, sys, time
from pathlib import Path
from model.classifier import FinbertClassifier

def load():
    return FinbertClassifier.load(sys.argv[1], "fp32", engine="openvino", engine_cache=Path(sys.argv[2]))

first, second = load(), load()
del first
gc.collect()
del second
gc.collect()

def on_alarm(*_):
    raise TimeoutError

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    time.sleep(5)
except TimeoutError:
    print("alarm handled")
"""


def test_a_signal_after_two_openvino_engines_were_dropped_is_handled(
    tiny_model_dir: Path, fp32_build
) -> None:
    """OpenVINO's CPU plugin left the thread on a freed signal stack: the alarm was a SIGSEGV (-11)."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_TWO_ENGINES, str(tiny_model_dir), str(fp32_build.folder.parent)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip().splitlines()[-1] == "alarm handled"
