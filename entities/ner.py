"""The optional NER model: organisation and person names in a text.

Any token-classification model with CoNLL-style tags (``B-ORG``, ``I-PER``, ... or the whole
words ``ORGANIZATION``, ``PERSON``) works, from the hub or a local folder, loaded like the
sentiment model (``model.classifier._load_pretrained``: local folder, local cache, then the hub;
every failure one line naming ``VOLFEFE_NER_MODEL``). For English posts ``dslim/bert-base-NER``
(MIT) is a common choice. It runs in the transformers token-classification pipeline, which joins
word pieces into words (``aggregation_strategy="first"``) and reads texts longer than the model in
overlapping windows (``stride``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from entities.settings import NER_MODEL_ENV
from model.engines import ModelLoadError

log = logging.getLogger(__name__)

#: entity groups that are organisations, and persons.
ORG_LABELS = frozenset({"ORG", "ORGANIZATION"})
PERSON_LABELS = frozenset({"PER", "PERSON"})
#: least score of a span the model reports (0-1); below it the span is ignored.
MIN_SCORE = 0.5
#: texts per forward pass.
BATCH_SIZE = 16
#: tokens shared by two windows of a text longer than the model, as a share of its length.
STRIDE_SHARE = 0.25

_LOAD_FIX = (
    f"set {NER_MODEL_ENV} to a local token-classification model folder (config.json, weights and tokenizer "
    f"files), or unset it to find entities by the asset list alone"
)


@dataclass(frozen=True)
class NamedSpan:
    start: int
    end: int
    #: ``ORG`` or ``PER`` (other groups are not kept).
    label: str
    score: float


class EntityRecognizer:
    """A loaded token-classification pipeline that reports organisation and person spans."""

    def __init__(self, pipeline, source: str) -> None:
        self._pipeline = pipeline
        self.source = source

    @classmethod
    def load(cls, source: str) -> EntityRecognizer:
        """Load ``source`` (hub id or folder); raise ModelLoadError (one line) on any failure."""
        from transformers import AutoModelForTokenClassification, pipeline

        from model.classifier import _load_pretrained

        started = time.perf_counter()
        tokenizer, model = _load_pretrained(
            source, model_class=AutoModelForTokenClassification, setting=NER_MODEL_ENV, fix=_LOAD_FIX
        )
        groups = {_group(label) for label in model.config.id2label.values()}
        if not groups & ORG_LABELS:
            raise ModelLoadError(
                f"cannot use {NER_MODEL_ENV}={source!r}: it has no organisation tag (ORG) among its labels "
                f"{sorted(model.config.id2label.values())}; use a named-entity model"
            )
        if not tokenizer.is_fast:
            raise ModelLoadError(
                f"cannot use {NER_MODEL_ENV}={source!r}: its tokenizer has no fast (Rust) version, which "
                "entity offsets need"
            )
        limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        tokenizer.model_max_length = min(tokenizer.model_max_length, limit)
        stride = max(1, int(tokenizer.model_max_length * STRIDE_SHARE))
        runner = pipeline(
            "token-classification",
            model=model.eval(),
            tokenizer=tokenizer,
            aggregation_strategy="first",
            stride=stride,
            device="cpu",
        )
        recognizer = cls(runner, source)
        log.info("loaded NER model %s in %.2fs", source, time.perf_counter() - started)
        return recognizer

    def recognize(self, texts: Sequence[str]) -> list[list[NamedSpan]]:
        """Organisation and person spans of each text (offsets into it), in input order."""
        found: list[list[NamedSpan]] = [[] for _ in texts]
        todo = [index for index, text in enumerate(texts) if text.strip()]
        if not todo:
            return found
        outputs = self._pipeline([texts[index] for index in todo], batch_size=BATCH_SIZE)
        for index, entities in zip(todo, outputs, strict=True):
            for entity in entities:
                label = _group(entity["entity_group"])
                label = "ORG" if label in ORG_LABELS else "PER" if label in PERSON_LABELS else None
                if label and float(entity["score"]) >= MIN_SCORE:
                    start, end = _trimmed(texts[index], int(entity["start"]), int(entity["end"]))
                    if start < end:
                        found[index].append(NamedSpan(start, end, label, round(float(entity["score"]), 4)))
        return found


def _group(label: str) -> str:
    """``B-ORG`` -> ``ORG``; ``PERSON`` -> ``PERSON``."""
    prefix, _, rest = label.partition("-")
    return rest.upper() if rest and prefix.upper() in {"B", "I", "E", "S", "L", "U"} else label.upper()


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not (text[end - 1].isalnum() or text[end - 1] in "&+"):
        end -= 1
    return start, end
