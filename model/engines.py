"""Inference engines behind ``FinbertClassifier``: what turns a padded batch of token ids into probabilities.

The classifier owns the tokenizer, labels, windows and batching; an engine only runs the model. ``torch``
runs the transformers model in place at fp32, bf16 or dynamic int8; ``openvino`` (``model.openvino_engine``)
runs a conversion built once (``model.engine_choice`` builds it on first use, or falls back to torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from errors import VolfefeError

if TYPE_CHECKING:
    import torch


class ModelLoadError(VolfefeError):
    """FINBERT_MODEL could not be loaded; the message is one readable line."""


class EngineLoadError(ModelLoadError):
    """The model is fine but its engine (an OpenVINO conversion) cannot be loaded here; one line."""


class Engine(Protocol):
    """A loaded model: softmax probabilities (float32, one row per input row) for a padded batch."""

    #: passes are padded to a multiple of this many tokens (1: to their longest window).
    width_step: int

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


def engine_tag(engine: str, precision: str) -> str:
    """The last ``+`` part of a model_version: ``bf16`` for torch (stored versions stay valid), else ``openvino-int8``."""
    return precision if engine == "torch" else f"{engine}-{precision}"


class TorchEngine:
    """The transformers model itself, converted to ``precision`` in place. At fp32 and bf16, given the
    tokenizer to check it with, a BERT classifier runs its last layer for the first token only
    (``model.cls_only``: the same logits, ~7% less work); dynamic int8 runs the whole model."""

    width_step = 1

    def __init__(self, model: torch.nn.Module, precision: str, tokenizer: Any = None) -> None:
        self.model = _apply_precision(model.eval(), precision)
        #: the model with its last layer for the first token only, or None: the whole model runs.
        self.first_row_only: torch.nn.Module | None = None
        if precision != "int8" and tokenizer is not None:
            from model.cls_only import CHECK_TEXTS, cls_only, plain_bert_classifier

            try:
                check = tokenizer(list(CHECK_TEXTS), padding=True, return_tensors="pt")
            except ValueError:  # a tokenizer without a padding token: no padded row to check with
                check = None
            if check is not None and plain_bert_classifier(self.model):
                self.first_row_only = cls_only(self.model, check["input_ids"], check["attention_mask"])

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        with torch.inference_mode():
            if self.first_row_only is not None:
                logits = self.first_row_only(ids, mask)
            else:
                logits = self.model(input_ids=ids, attention_mask=mask).logits
        return torch.softmax(logits.float(), dim=-1).numpy()


def load_dtype(precision: str) -> str:
    """The dtype torch weights are loaded in for ``precision``: bf16 as such (half the memory of loading
    fp32 and converting), everything else in fp32 (int8 quantizes from fp32)."""
    return "bfloat16" if precision == "bf16" else "float32"


def _apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    import torch

    if precision == "bf16":
        return model.to(torch.bfloat16)  # a no-op when loaded in load_dtype("bf16")
    model = model.float()  # from whatever dtype the checkpoint was saved in
    if precision == "int8":
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model
