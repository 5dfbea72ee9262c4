"""A BERT sequence classifier whose last encoder layer is computed for the first token only.

A BERT sequence classifier reads one row of its last layer: the first token's ([CLS]), through the
pooler. The full model still computes every row of that layer (its query, attention output and
feed-forward) and throws all but the first away: on the FinBERT shape, that is ~83% of one layer of
twelve, and the int8 matrix multiplications that dominate a forward pass already run near the CPU's
peak (bench/README.md, "Where a forward pass goes, and the last layer for the first token only").
``ClsOnlyLastLayer`` runs the other layers as the model does and the last one, from its own modules,
for the first row alone (its keys and values still read every token), which is the same function.
``cls_only`` wraps a model only where that is checked: a plain BERT sequence classifier whose logits,
wrapped, equal the model's on the given inputs. A conversion traces the wrapper
(``model.openvino_engine``); nothing else uses it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

#: largest logit difference allowed between the model and its wrapper (fp32; seen: ~2.4e-7).
TOLERANCE = 1e-4


class ClsOnlyLastLayer(nn.Module):
    """``model``'s logits from ``(input_ids, attention_mask)``, the last layer for the first row only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bert = self.model.bert
        layers = bert.encoder.layer
        last = layers[-1]
        # The model's own code runs the other layers (embeddings, mask, attention implementation): the
        # encoder holds all but the last while it does. A trace records only the operations.
        bert.encoder.layer = layers[:-1]
        try:
            hidden = bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            bert.encoder.layer = layers
        attention = last.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size
        rows = hidden.shape[0]
        first = hidden[:, :1]
        query = attention.query(first).view(rows, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden).view(rows, -1, heads, size).transpose(1, 2)
        value = attention.value(hidden).view(rows, -1, heads, size).transpose(1, 2)
        scores = query @ key.transpose(-1, -2) * size**-0.5
        padding = (1.0 - attention_mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
        weights = torch.softmax(scores + padding, dim=-1)
        context = (weights @ value).transpose(1, 2).reshape(rows, 1, heads * size)
        attended = last.attention.output(context, first)
        output = last.output(last.intermediate(attended), attended)
        return self.model.classifier(self.model.dropout(bert.pooler(output)))

    def first_row_patterns(self) -> list[str]:
        """Names (regular expressions) of the converted graph's operations run on the first row alone:
        the last layer's query, attention output and feed-forward."""
        last = len(self.model.bert.encoder.layer) - 1
        parts = r"attention\.self\.query|attention\.output\.dense|intermediate\.dense|output\.dense"
        return [rf".*\.encoder\.layer\.{last}\.({parts})/.*"]


def _plain_bert_classifier(model: nn.Module) -> bool:
    """A BERT encoder (no decoder, no cross-attention), a pooler and a classifier on it."""
    config = model.config
    bert = getattr(model, "bert", None)
    return (
        type(model).__name__ == "BertForSequenceClassification"
        and getattr(config, "model_type", None) == "bert"
        and not getattr(config, "is_decoder", False)
        and not getattr(config, "add_cross_attention", False)
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and bert is not None
        and getattr(bert, "pooler", None) is not None
        and len(bert.encoder.layer) >= 1
    )


def cls_only(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> nn.Module | None:
    """``model`` wrapped to compute its last layer for the first row only, or None (logged) where it is
    not a plain BERT sequence classifier or the wrapper's logits differ from the model's on these
    inputs by more than ``TOLERANCE``. ``model`` is in eval mode, in fp32."""
    if not _plain_bert_classifier(model):
        return None
    wrapped = ClsOnlyLastLayer(model).eval()
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
        try:
            got = wrapped(input_ids, attention_mask)
        except (AttributeError, RuntimeError, TypeError) as error:  # modules not shaped as BERT's
            log.info("converting the whole last layer: the first-row form does not run (%s)", error)
            return None
    difference = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not difference <= TOLERANCE:
        log.info("converting the whole last layer: the first-row form differs by %.3g", difference)
        return None
    return wrapped
