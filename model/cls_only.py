"""A BERT sequence classifier whose last encoder layer is computed for the first token only.

A BERT sequence classifier reads one row of its last layer: the first token's ([CLS]), through the
pooler. The full model still computes every row of that layer (its query, attention output and
feed-forward) and throws all but the first away: on the FinBERT shape, that is ~83% of one layer of
twelve, and the int8 matrix multiplications that dominate a forward pass already run near the CPU's
peak (bench/README.md, "Where a forward pass goes, and the last layer for the first token only").
``ClsOnlyLastLayer`` runs the other layers as the model does and the last one, from its own modules,
for the first row alone (its keys and values still read every token), which is the same function.
``cls_only`` wraps a model only where that is checked: a plain BERT sequence classifier whose logits,
wrapped, equal the model's on the given inputs (to fp32's rounding, or bf16's). A conversion traces
the wrapper (``model.openvino_engine``), and the torch engine runs it at fp32 and bf16
(``model.engines``).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

#: texts a wrapper is checked on (and a conversion traced with): two lengths, so that a row is padded
#: (and a traced attention mask has padding in it).
CHECK_TEXTS = ("stocks rose", "shares of the bank fell after it cut its outlook for the year")

#: largest logit difference allowed between an fp32 model and its wrapper (seen: ~2.4e-7).
TOLERANCE = 1e-4
#: the same for a bf16 model, as a share of its largest logit: bf16 keeps 8 significant bits, and the
#: first row's products round in other places than the whole layer's (seen: 0.02-1.3% on the tiny test
#: model, the FinBERT shape and the trained stand-in; a wrong function differs by the logits' size).
BF16_TOLERANCE = 2**-4


def _without_last_layer(bert: nn.Module) -> nn.Module:
    """``bert`` with all but its last encoder layer and no pooler: shallow copies sharing every module
    and weight, so that the model itself is never altered."""
    encoder = copy.copy(bert.encoder)
    encoder._modules = dict(encoder._modules)  # its own table of submodules: the model's stays whole
    encoder.layer = bert.encoder.layer[:-1]
    trunk = copy.copy(bert)
    trunk._modules = dict(trunk._modules)
    trunk.encoder = encoder
    trunk.pooler = None
    return trunk


class ClsOnlyLastLayer(nn.Module):
    """``model``'s logits from ``(input_ids, attention_mask)``, the last layer for the first row only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # The model's own code runs the other layers (embeddings, mask, attention implementation).
        self.trunk = _without_last_layer(model.bert)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bert = self.model.bert
        last = bert.encoder.layer[-1]
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
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


def plain_bert_classifier(model: nn.Module) -> bool:
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


def _float_precision(model: nn.Module) -> torch.dtype | None:
    """float32 or bfloat16 when every weight of ``model`` is in it and none is quantized, else None."""
    from torch.ao.nn.quantized import dynamic

    dtypes = {parameter.dtype for parameter in model.parameters()}
    if len(dtypes) != 1 or any(isinstance(module, dynamic.Linear) for module in model.modules()):
        return None
    dtype = dtypes.pop()
    return dtype if dtype in (torch.float32, torch.bfloat16) else None


def cls_only(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> nn.Module | None:
    """``model`` wrapped to compute its last layer for the first row only, or None (logged) where it is
    not a plain BERT sequence classifier in fp32 or bf16, or the wrapper's logits differ from the
    model's on these inputs by more than ``TOLERANCE`` (bf16: ``BF16_TOLERANCE`` of the largest
    logit). ``model`` is in eval mode. Not for a dynamically quantized model: each of its products
    scales its input by that input's range, which for one row is another function."""
    if not plain_bert_classifier(model):
        return None
    dtype = _float_precision(model)
    if dtype is None:
        return None
    wrapped = ClsOnlyLastLayer(model).eval()
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        try:
            got = wrapped(input_ids, attention_mask).float()
        except (AttributeError, RuntimeError, TypeError) as error:  # modules not shaped as BERT's
            log.info("running the whole last layer: the first-row form does not run (%s)", error)
            return None
    difference = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    allowed = TOLERANCE if dtype == torch.float32 else BF16_TOLERANCE * float(expected.abs().max())
    if not difference <= allowed:
        log.info("running the whole last layer: the first-row form differs by %.3g", difference)
        return None
    return wrapped
