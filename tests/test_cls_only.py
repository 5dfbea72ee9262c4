"""The last layer for the first token only (model/cls_only.py): the same logits, and only where checked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForTokenClassification,
)

from model import cls_only as cls_only_module
from model import openvino_engine
from model.classifier import FinbertClassifier, pad_batch
from model.cls_only import ClsOnlyLastLayer, cls_only
from model.engines import TorchEngine
from tools.random_model import TINY_CONFIG

TEXTS = [
    "a",
    "Stocks rally on strong earnings",
    "The retailer cut 1,200 jobs and suspended its dividend, and its shares fell 9% after hours.",
    "Bonds rallied as yields dropped " * 12,  # past the tiny model's 128 positions: truncated here
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()
    inputs = tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    return model, inputs


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def fresh_model(tiny_model_dir: Path) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()


def padded(tokenizer) -> tuple:
    """``TEXTS`` as an engine receives them: int64 arrays padded to the longest."""
    ids = tokenizer(TEXTS, truncation=True, max_length=128)["input_ids"]
    return pad_batch(ids, tokenizer.pad_token_id)


def test_the_first_row_form_gives_the_models_logits_on_padded_rows(tiny) -> None:
    model, inputs = tiny
    assert int(inputs["attention_mask"].sum(dim=1).min()) < inputs["input_ids"].shape[1]  # padding met
    wrapped = cls_only(model, inputs["input_ids"], inputs["attention_mask"])
    assert isinstance(wrapped, ClsOnlyLastLayer)
    with torch.no_grad():
        expected = model(**inputs).logits
        got = wrapped(inputs["input_ids"], inputs["attention_mask"])
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    # the model is left whole: every layer still in its encoder, and its pooler
    assert len(model.bert.encoder.layer) == TINY_CONFIG["num_hidden_layers"]
    assert model.bert.pooler is not None
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, expected)


def test_each_row_is_its_own_whatever_the_rest_of_the_pass_holds(tiny) -> None:
    model, inputs = tiny
    wrapped = ClsOnlyLastLayer(model).eval()
    with torch.no_grad():
        together = wrapped(inputs["input_ids"], inputs["attention_mask"])
        for row in range(len(TEXTS)):
            width = int(inputs["attention_mask"][row].sum())
            alone = wrapped(
                inputs["input_ids"][row : row + 1, :width], inputs["attention_mask"][row : row + 1, :width]
            )
            assert torch.allclose(alone[0], together[row], atol=1e-4, rtol=0)


def test_other_architectures_are_not_wrapped(tiny) -> None:
    _, inputs = tiny
    settings = {key: value for key, value in TINY_CONFIG.items() if key not in {"id2label", "label2id"}}
    token_model = BertForTokenClassification(BertConfig(**settings, vocab_size=200)).eval()
    assert cls_only(token_model, inputs["input_ids"] % 200, inputs["attention_mask"]) is None


def test_a_form_that_differs_from_the_model_is_not_used(
    tiny, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model, inputs = tiny
    monkeypatch.setattr(cls_only_module, "TOLERANCE", -1.0)  # no difference is small enough
    with caplog.at_level(logging.INFO, logger="model.cls_only"):
        assert cls_only(model, inputs["input_ids"], inputs["attention_mask"]) is None
    assert "running the whole last layer: the first-row form differs by" in caplog.text


def test_the_conversion_computes_the_last_feed_forward_for_one_row(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """In the converted graph, the last layer's feed-forward output has one row a text; the others have
    one a token."""
    import openvino as ov

    build = openvino_engine.build(str(tiny_model_dir), "fp32", 512, tmp_path)
    assert build.record["last_layer"] == openvino_engine.LAST_LAYER_FIRST_TOKEN
    graph = ov.Core().read_model(build.folder / openvino_engine.IR_FILE)
    feed_forward_rows = [
        op.get_output_partial_shape(0)[1].get_max_length()  # -1: unbounded
        for op in graph.get_ordered_ops()
        if op.get_type_name() == "MatMul"
        and op.get_output_partial_shape(0).rank.get_length() == 3
        and op.get_output_partial_shape(0)[2] == TINY_CONFIG["intermediate_size"]
    ]
    assert len(feed_forward_rows) == TINY_CONFIG["num_hidden_layers"]
    assert feed_forward_rows == [-1] * (TINY_CONFIG["num_hidden_layers"] - 1) + [1]


def test_int8_leaves_the_first_rows_work_unquantized_and_the_rest_quantized(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The last layer's first-row operations run in f32 (their few rows cost little, and their int8
    error was the largest on the tiny model); its keys and values, and every other layer, in int8."""
    import openvino as ov

    build = openvino_engine.build(str(tiny_model_dir), "int8", 512, tmp_path)
    graph = ov.Core().read_model(build.folder / openvino_engine.IR_FILE)
    last = TINY_CONFIG["num_hidden_layers"] - 1
    # an int8 weight reaches its MatMul through a dequantizing Multiply; an f32 one is a Constant
    weights = {
        op.get_friendly_name().split("/")[0].split(".encoder.")[1]: op.input_value(1)
        .get_node()
        .get_type_name()
        for op in graph.get_ordered_ops()
        if op.get_type_name() == "MatMul" and ".encoder.layer." in op.get_friendly_name()
    }
    first_row = {"attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"}
    for name in first_row:
        assert weights[f"layer.{last}.{name}"] == "Constant"
        assert weights[f"layer.0.{name}"] == "Multiply"
    assert weights[f"layer.{last}.attention.self.key"] == "Multiply"
    assert weights[f"layer.{last}.attention.self.value"] == "Multiply"


def test_the_torch_engine_runs_the_first_row_form_at_fp32_with_the_models_probabilities(
    tiny_model_dir: Path, tokenizer
) -> None:
    ids, mask = padded(tokenizer)
    assert int(mask.sum(axis=1).min()) < ids.shape[1]  # padding met
    first_row = TorchEngine(fresh_model(tiny_model_dir), "fp32", tokenizer)
    whole = TorchEngine(fresh_model(tiny_model_dir), "fp32")  # no tokenizer to check with: the whole model
    assert isinstance(first_row.first_row_only, ClsOnlyLastLayer)
    assert whole.first_row_only is None
    got, expected = first_row.forward(ids, mask), whole.forward(ids, mask)
    assert got.shape == (len(TEXTS), 3)
    assert abs(got - expected).max() <= 1e-5


def test_the_torch_engine_runs_the_first_row_form_at_bf16_as_close_to_fp32_as_the_whole_model(
    tiny_model_dir: Path, tokenizer
) -> None:
    ids, mask = padded(tokenizer)
    first_row = TorchEngine(fresh_model(tiny_model_dir), "bf16", tokenizer)
    assert isinstance(first_row.first_row_only, ClsOnlyLastLayer)
    assert first_row.model.classifier.weight.dtype == torch.bfloat16
    got = first_row.forward(ids, mask)
    whole = TorchEngine(fresh_model(tiny_model_dir), "bf16").forward(ids, mask)
    fp32 = TorchEngine(fresh_model(tiny_model_dir), "fp32").forward(ids, mask)
    # bf16 rounds the first row's products elsewhere than the whole layer's: no further from fp32
    # than bf16 itself is, over twice its distance at most
    assert abs(got - whole).max() <= 0.02
    assert abs(got - fp32).max() <= 2 * abs(whole - fp32).max() + 1e-3


def test_a_bf16_form_that_differs_from_the_model_is_not_used(
    tiny_model_dir: Path, tokenizer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cls_only_module, "BF16_TOLERANCE", -1.0)
    with caplog.at_level(logging.INFO, logger="model.cls_only"):
        engine = TorchEngine(fresh_model(tiny_model_dir), "bf16", tokenizer)
    assert engine.first_row_only is None
    assert "running the whole last layer: the first-row form differs by" in caplog.text
    ids, mask = padded(tokenizer)
    assert engine.forward(ids, mask).shape == (len(TEXTS), 3)  # the whole model runs


def test_dynamic_int8_runs_the_whole_model(tiny_model_dir: Path, tokenizer) -> None:
    """Dynamic int8 scales each product's input by that input's range: one row is another function."""
    engine = TorchEngine(fresh_model(tiny_model_dir), "int8", tokenizer)
    assert engine.first_row_only is None
    quantized = torch.ao.quantization.quantize_dynamic(
        fresh_model(tiny_model_dir), {torch.nn.Linear}, dtype=torch.qint8
    )
    inputs = tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    assert cls_only(quantized, inputs["input_ids"], inputs["attention_mask"]) is None


def test_the_loader_gives_torch_the_first_row_form_and_the_same_predictions(tiny_model_dir: Path) -> None:
    loaded = FinbertClassifier.load(str(tiny_model_dir), "fp32", batch_size=2)
    assert isinstance(loaded.engine.first_row_only, ClsOnlyLastLayer)
    whole = FinbertClassifier(
        TorchEngine(fresh_model(tiny_model_dir), "fp32"),
        loaded.tokenizer,
        loaded.labels,
        loaded.model_version,
        loaded.max_length,
        batch_size=2,
    )
    for got, expected in zip(loaded.classify(TEXTS), whole.classify(TEXTS), strict=True):
        assert got.sentiment == expected.sentiment
        for label, score in expected.raw_scores.items():
            assert abs(got.raw_scores[label] - score) <= 1e-5


def test_a_tokenizer_that_cannot_pad_leaves_torch_the_whole_model(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.pad_token = None
    with pytest.raises(ValueError):
        tokenizer(["a", "a b c"], padding=True)
    engine = TorchEngine(fresh_model(tiny_model_dir), "fp32", tokenizer)
    assert engine.first_row_only is None
    ids, mask = pad_batch(tokenizer(TEXTS, truncation=True, max_length=128)["input_ids"], 0)
    assert engine.forward(ids, mask).shape == (len(TEXTS), 3)
