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
from model.cls_only import ClsOnlyLastLayer, cls_only
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
    # the model is left whole: every layer still in its encoder
    assert len(model.bert.encoder.layer) == TINY_CONFIG["num_hidden_layers"]


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
    assert "converting the whole last layer: the first-row form differs by" in caplog.text


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
