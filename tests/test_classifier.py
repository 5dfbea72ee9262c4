"""model.classifier: our batched classifier against transformers' own pipeline, on the tiny model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from model.classifier import FinbertClassifier, ModelLoadError, Prediction

TOLERANCE = 1e-5
#: the tiny model's position embeddings.
TINY_POSITIONS = 128

TEXTS = [
    "Stocks rally on strong earnings",
    "Shares fall after weak guidance",
    "The Fed is expected to cut rates in the next quarter.",
    "Oil prices plunge as China demand drops",
    "Apple beat revenue forecast; record high sales!",
    "Tesla stock crash: investors sell, bearish outlook",
    "inflation",
    "a",
    "?",
    "The dollar is up and bond yields are down, markets mixed.",
    "Tariffs on trade with China hurt the economy and jobs report was weak",
    "Merger deal boosts bank shares 12% — CEO says growth will continue",
    "株価が上昇した 🚀📈",
    "Die Börse schließt höher",
    "$TSLA $AAPL #earnings @ceo 100% up!!!",
    "UPPERCASE HEADLINE: MARKETS SURGE",
    "profit " * 40,
]
#: texts longer than the tiny model's 128 positions: read in windows, never truncated.
LONG_TEXTS = [
    "The market was strong. Investors are bullish on growth. " * 30,
    " ".join(f"Company {i} reports quarter sales of {i * 7} and a loss." for i in range(200)),
    "stocks rally " * 2000,  # one "sentence" longer than a window: cut at the window's size
]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path):
    """transformers' text-classification pipeline on the same model: every label's score."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(tiny_model_dir), top_k=None, device="cpu")
    results = pipe(TEXTS, truncation=True, max_length=TINY_POSITIONS)
    return [{item["label"].lower(): item["score"] for item in scores} for scores in results]


def assert_valid(prediction: Prediction, labels: tuple[str, ...]) -> None:
    assert prediction.sentiment in labels
    assert set(prediction.raw_scores) == set(labels)
    assert all(0.0 <= score <= 1.0 for score in prediction.raw_scores.values())
    assert math.isclose(sum(prediction.raw_scores.values()), 1.0, abs_tol=1e-3)
    assert prediction.confidence == max(prediction.raw_scores.values())
    assert prediction.raw_scores[prediction.sentiment] == prediction.confidence


def assert_same_scores(ours: list[Prediction], theirs: list[Prediction]) -> None:
    assert len(ours) == len(theirs)
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.sentiment == b.sentiment, index
        for label, score in a.raw_scores.items():
            assert abs(score - b.raw_scores[label]) <= TOLERANCE, (index, label)


def test_loads_labels_from_the_config_and_caps_max_length(tiny_classifier: FinbertClassifier) -> None:
    assert tiny_classifier.labels == ("neutral", "positive", "negative")
    # FINBERT_MAX_LENGTH defaults to 512, but the tiny model has only 128 positions.
    assert tiny_classifier.max_length == TINY_POSITIONS
    assert tiny_classifier.model_version.endswith("+fp32")


def test_matches_the_transformers_pipeline(tiny_classifier: FinbertClassifier, reference) -> None:
    predictions = tiny_classifier.classify(TEXTS)
    assert len(predictions) == len(TEXTS)
    for index, (prediction, expected) in enumerate(zip(predictions, reference, strict=True)):
        assert_valid(prediction, tiny_classifier.labels)
        assert prediction.sentiment == max(expected, key=expected.get), index
        assert set(prediction.raw_scores) == set(expected)
        for label, score in expected.items():
            assert abs(prediction.raw_scores[label] - score) <= TOLERANCE, (index, label)
    # The random model is not degenerate: the comparison covers more than one label.
    assert len({prediction.sentiment for prediction in predictions}) >= 2


def test_short_texts_are_one_window_with_their_token_count(tiny_classifier: FinbertClassifier) -> None:
    for text, prediction in zip(TEXTS, tiny_classifier.classify(TEXTS), strict=True):
        assert prediction.windows == 1
        assert prediction.tokens == len(
            tiny_classifier.tokenizer(text, add_special_tokens=False)["input_ids"]
        )


def test_long_texts_are_read_in_windows_that_each_fit(tiny_classifier: FinbertClassifier) -> None:
    from model.windows import split_into_windows

    for index, text in enumerate(LONG_TEXTS):
        total = len(tiny_classifier.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert total > TINY_POSITIONS
        windows = split_into_windows(tiny_classifier.tokenizer, [text], TINY_POSITIONS)
        assert len(windows) >= 2, index
        assert all(len(window.input_ids) <= TINY_POSITIONS for window in windows)
        # Every token is read once: no truncation, no overlap.
        assert sum(window.tokens for window in windows) == total
        (prediction,) = tiny_classifier.classify([text])
        assert prediction.windows == len(windows)
        assert prediction.tokens == total
        assert_valid(prediction, tiny_classifier.labels)


def test_windows_end_at_sentence_boundaries(tiny_classifier: FinbertClassifier) -> None:
    from model.windows import split_into_windows

    tokenizer = tiny_classifier.tokenizer
    windows = split_into_windows(tokenizer, [LONG_TEXTS[0]], TINY_POSITIONS)
    for window in windows:
        words = tokenizer.decode(window.input_ids, skip_special_tokens=True).strip()
        assert words.endswith("."), words[-40:]


def test_a_long_text_scores_the_token_weighted_mean_of_its_windows(
    tiny_classifier: FinbertClassifier,
) -> None:
    from model.windows import split_into_windows

    tokenizer = tiny_classifier.tokenizer
    text = LONG_TEXTS[1]
    windows = split_into_windows(tokenizer, [text], TINY_POSITIONS)
    # Each window on its own, as a text: the model's scores for exactly those tokens.
    alone = [
        tiny_classifier.classify([tokenizer.decode(window.input_ids, skip_special_tokens=True)])[0]
        for window in windows
    ]
    weights = [window.tokens for window in windows]
    (prediction,) = tiny_classifier.classify([text])
    for label in tiny_classifier.labels:
        expected = sum(w * p.raw_scores[label] for w, p in zip(weights, alone, strict=True)) / sum(weights)
        assert abs(prediction.raw_scores[label] - expected) <= 1e-4, label


def test_more_text_after_the_first_window_changes_the_score(tiny_classifier: FinbertClassifier) -> None:
    # Truncation would ignore everything after 128 tokens; windows read it.
    long_text = LONG_TEXTS[0]
    (whole,) = tiny_classifier.classify([long_text])
    (longer,) = tiny_classifier.classify([long_text + " Crash plunge loss. " * 60])
    assert longer.windows > whole.windows
    assert any(abs(whole.raw_scores[label] - longer.raw_scores[label]) > 1e-4 for label in whole.raw_scores)


def test_input_order_is_kept_although_batches_are_sorted_by_length(
    tiny_classifier: FinbertClassifier,
) -> None:
    texts = TEXTS + LONG_TEXTS
    one_by_one = [tiny_classifier.classify([text])[0] for text in texts]
    together = tiny_classifier.classify(texts)
    assert_same_scores(together, one_by_one)
    reversed_order = tiny_classifier.classify(list(reversed(texts)))
    assert_same_scores(list(reversed(reversed_order)), one_by_one)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batch_size_does_not_change_scores(tiny_model_dir: Path, batch_size: int) -> None:
    reference = FinbertClassifier.load(str(tiny_model_dir), batch_size=64)
    batched = FinbertClassifier.load(str(tiny_model_dir), batch_size=batch_size)
    assert batched.batch_size == batch_size
    texts = TEXTS + LONG_TEXTS
    assert_same_scores(batched.classify(texts), reference.classify(texts))


def test_duplicate_texts_get_the_same_prediction(tiny_classifier: FinbertClassifier) -> None:
    first, second, other = tiny_classifier.classify(["Shares fall", "Shares fall", "Stocks rally " * 20])
    assert first.sentiment == second.sentiment
    for label in first.raw_scores:
        assert abs(first.raw_scores[label] - second.raw_scores[label]) <= TOLERANCE
    assert other.raw_scores != first.raw_scores


def test_no_texts_no_predictions(tiny_classifier: FinbertClassifier) -> None:
    assert tiny_classifier.classify([]) == []


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_load_and_classify(tiny_model_dir: Path, precision: str) -> None:
    reduced = FinbertClassifier.load(str(tiny_model_dir), precision=precision, batch_size=4)
    assert reduced.model_version.endswith(f"+{precision}")
    assert reduced.model_version.startswith(str(tiny_model_dir.resolve()))
    predictions = reduced.classify(TEXTS)
    assert len(predictions) == len(TEXTS)
    for prediction in predictions:
        assert_valid(prediction, reduced.labels)
        assert isinstance(prediction.confidence, float)


def test_unknown_precision_is_a_load_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="FINBERT_PRECISION='fp16'"):
        FinbertClassifier.load(str(tiny_model_dir), precision="fp16")


# -- models that cannot be loaded: one readable line naming FINBERT_MODEL --------------------------


def assert_one_line_naming_finbert_model(error: ModelLoadError, source: str) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message
    assert message.strip() == message and message
    assert f"FINBERT_MODEL={source!r}" in message
    # The cause is not chained into a traceback wall either.
    assert error.__cause__ is None


def test_missing_folder(tmp_path: Path) -> None:
    source = str(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError) as caught:
        FinbertClassifier.load(source)
    assert_one_line_naming_finbert_model(caught.value, source)
    assert "no such folder" in str(caught.value)


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not a model\nat all\n")
    with pytest.raises(ModelLoadError) as caught:
        FinbertClassifier.load(str(tmp_path))
    assert_one_line_naming_finbert_model(caught.value, str(tmp_path))


def test_unreachable_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    import model.classifier

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def no_probe(endpoint: str) -> bool:
        raise AssertionError("the hub must not be probed when offline")

    monkeypatch.setattr(model.classifier, "_hub_reachable", no_probe)
    source = "volfefe-tests/no-such-model"
    with pytest.raises(ModelLoadError) as caught:
        FinbertClassifier.load(source)
    assert_one_line_naming_finbert_model(caught.value, source)
    assert "cannot be reached" in str(caught.value)


def test_unreachable_hub_id_online_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    import model.classifier

    # Not offline, but the hub does not answer (probed without touching the network here).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    probed: list[str] = []
    monkeypatch.setattr(model.classifier, "_hub_reachable", lambda endpoint: probed.append(endpoint) or False)
    source = "volfefe-tests/no-such-model"
    with pytest.raises(ModelLoadError) as caught:
        FinbertClassifier.load(source)
    assert probed == [constants.ENDPOINT]
    assert_one_line_naming_finbert_model(caught.value, source)
    assert constants.ENDPOINT in str(caught.value)


def _copy_with_labels(tiny_model_dir: Path, target: Path, id2label: dict[str, str]) -> Path:
    shutil.copytree(tiny_model_dir, target)
    config_file = target / "config.json"
    config = json.loads(config_file.read_text())
    config["id2label"] = id2label
    config["label2id"] = {name: int(index) for index, name in id2label.items()}
    config_file.write_text(json.dumps(config))
    return target


def test_unnamed_labels_are_a_load_error_naming_finbert_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    unnamed = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    source = str(_copy_with_labels(tiny_model_dir, tmp_path / "anonymous", unnamed))
    with pytest.raises(ModelLoadError) as caught:
        FinbertClassifier.load(source)
    assert_one_line_naming_finbert_model(caught.value, source)
    assert "FINBERT_LABELS" in str(caught.value)
    # With FINBERT_LABELS it loads, in that order.
    loaded = FinbertClassifier.load(source, labels=["negative", "neutral", "positive"])
    assert loaded.labels == ("negative", "neutral", "positive")
    (prediction,) = loaded.classify(["Stocks rally"])
    assert_valid(prediction, loaded.labels)


def test_unnamed_labels_of_a_finbert_tone_folder_use_the_card_order(
    tiny_model_dir: Path, tmp_path: Path, tiny_classifier: FinbertClassifier
) -> None:
    unnamed = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    source = str(_copy_with_labels(tiny_model_dir, tmp_path / "finbert-tone", unnamed))
    loaded = FinbertClassifier.load(source)
    assert loaded.labels == ("neutral", "positive", "negative")
    # Same weights as the tiny model, whose config names them in that same order.
    assert_same_scores(loaded.classify(TEXTS[:5]), tiny_classifier.classify(TEXTS[:5]))
