"""A model's fast tokenizer saved beside its conversion, read back without transformers (or torch).

An OpenVINO worker needs the tokenizer and a few facts of the model's config, nothing else of
transformers. Importing transformers' tokenizer or config classes imports torch (its configuration
module does), ~200 MB a worker never uses. The conversion is built with transformers anyway: it
saves the tokenizer's own Rust backend (``tokenizer.json``, what transformers' fast tokenizer runs)
and the facts, and a worker loads both with the ``tokenizers`` library alone. Token ids are the
same: the same backend runs, with truncation and padding off, as ``model.windows`` calls it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.model_marks import config_has_random_weights

TOKENIZER_FILE = "tokenizer.json"
FACTS_FILE = "model_facts.json"


@dataclass(frozen=True)
class ModelFacts:
    """What a classifier reads from a model's config: labels, positions, revision, random weights."""

    id2label: dict[int, str]
    max_position_embeddings: int | None
    #: the hub commit the model was read at (None for a folder).
    revision: str | None
    random_weights: bool
    pad_token_id: int | None

    @classmethod
    def of(cls, config: Any, tokenizer: Any) -> ModelFacts:
        return cls(
            id2label={int(index): str(label) for index, label in config.id2label.items()},
            max_position_embeddings=getattr(config, "max_position_embeddings", None),
            revision=getattr(config, "_commit_hash", None),
            random_weights=config_has_random_weights(config),
            pad_token_id=tokenizer.pad_token_id,
        )


class SavedTokenizer:
    """A ``tokenizers.Tokenizer`` called as ``model.windows`` calls transformers' tokenizers."""

    def __init__(self, backend: Any, pad_token_id: int | None) -> None:
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.pad_token_id = pad_token_id

    def __call__(
        self, texts: str | Sequence[str], add_special_tokens: bool = True, truncation: bool = False
    ) -> dict[str, Any]:
        if truncation:
            raise ValueError("texts are read in windows (model.windows), never truncated")
        if isinstance(texts, str):
            return {"input_ids": self.backend.encode(texts, add_special_tokens=add_special_tokens).ids}
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [encoding.ids for encoding in encodings]}


def can_save(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` is a fast one, with a Rust backend to save."""
    return getattr(tokenizer, "backend_tokenizer", None) is not None


def save(folder: Path, tokenizer: Any, facts: ModelFacts) -> None:
    """Write ``tokenizer``'s backend and ``facts`` into ``folder`` (a conversion being built)."""
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    (folder / FACTS_FILE).write_text(json.dumps(asdict(facts), indent=2, sort_keys=True))


def load(folder: Path) -> tuple[SavedTokenizer, ModelFacts] | None:
    """The tokenizer and facts saved in ``folder``, or None when it holds none."""
    from tokenizers import Tokenizer

    if not (folder / TOKENIZER_FILE).is_file() or not (folder / FACTS_FILE).is_file():
        return None
    raw = json.loads((folder / FACTS_FILE).read_text())
    facts = ModelFacts(**{**raw, "id2label": {int(index): label for index, label in raw["id2label"].items()}})
    return SavedTokenizer(Tokenizer.from_file(str(folder / TOKENIZER_FILE)), facts.pad_token_id), facts
