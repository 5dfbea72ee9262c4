"""Build BERT sequence classifiers with random weights, saved like a hub model.

Tests use a tiny one; the benchmark uses a FinBERT-shaped one (same architecture and cost per
token as yiyanghkust/finbert-tone, meaningless labels). Both load through the product's own code.
Each is marked as random in its config.json (``model.model_marks.RANDOM_WEIGHTS_KEY``), so that
everything it classifies is recorded, and reported, as coming from a model with random weights.

The entity tests use a tiny BERT token classifier with CoNLL labels (``O``, ``B-ORG``, ...):
random, or with labels *planted* on chosen words (``build_tiny_token_model(planted=...)``), so that
a test knows which spans the real transformers pipeline will report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from model.model_marks import RANDOM_WEIGHTS_KEY

#: a tiny BERT: fast to build and run, same code path as the real model.
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "initializer_range": 0.5,
    "id2label": {0: "Neutral", 1: "Positive", 2: "Negative"},
    "label2id": {"Neutral": 0, "Positive": 1, "Negative": 2},
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_WORDS = [
    "stocks",
    "rally",
    "on",
    "strong",
    "earnings",
    "shares",
    "fall",
    "after",
    "weak",
    "guidance",
    "market",
    "markets",
    "the",
    "a",
    "of",
    "to",
    "in",
    "and",
    "is",
    "are",
    "was",
    "up",
    "down",
    "profit",
    "loss",
    "revenue",
    "growth",
    "beat",
    "miss",
    "record",
    "high",
    "low",
    "bank",
    "rates",
    "inflation",
    "fed",
    "cut",
    "hike",
    "oil",
    "price",
    "prices",
    "dollar",
    "bond",
    "yields",
    "surge",
    "plunge",
    "gain",
    "gains",
    "drop",
    "drops",
    "tesla",
    "apple",
    "company",
    "investors",
    "quarter",
    "sales",
    "forecast",
    "outlook",
    "ceo",
    "trade",
    "tariff",
    "tariffs",
    "china",
    "economy",
    "jobs",
    "report",
    "strong",
    "weak",
    "buy",
    "sell",
    "bullish",
    "bearish",
    "crash",
    "boom",
    "deal",
    "merger",
]


def tiny_vocab() -> dict[str, int]:
    """A small WordPiece vocabulary: special tokens, words, characters and their ## pieces."""
    pieces = [*SPECIAL_TOKENS, *TINY_WORDS]
    characters = "abcdefghijklmnopqrstuvwxyz0123456789.,!?$%'-:;&#@/()"
    pieces += list(characters) + [f"##{char}" for char in characters]
    return {piece: index for index, piece in enumerate(dict.fromkeys(pieces))}


def build_random_model(
    target: Path, config: dict[str, Any], vocab: dict[str, int] | Path, seed: int = 0
) -> Path:
    """Save a BertForSequenceClassification with random weights and a WordPiece tokenizer to ``target``.

    Its config.json carries ``RANDOM_WEIGHTS_KEY: true``.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab_arg = str(vocab) if isinstance(vocab, Path) else vocab
    tokenizer = BertTokenizer(vocab=vocab_arg, do_lower_case=True)
    settings = {key: value for key, value in config.items() if key not in {"architectures", "_name_or_path"}}
    settings["vocab_size"] = max(settings.get("vocab_size", 0), len(tokenizer))
    settings[RANDOM_WEIGHTS_KEY] = True
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(**settings))
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def build_tiny_model(target: Path, seed: int = 0, labels: list[str] | None = None) -> Path:
    """A tiny model; ``labels``: its label names in id order (default Neutral/Positive/Negative, as
    finbert-tone; ``LABEL_0``-style names leave them unnamed; two names make a two-label model)."""
    config = dict(TINY_CONFIG)
    if labels is not None:
        config["id2label"] = dict(enumerate(labels))
        config["label2id"] = {name: index for index, name in enumerate(labels)}
    return build_random_model(target, config, tiny_vocab(), seed)


def build_finbert_shaped_model(target: Path, config_json: Path, vocab_txt: Path, seed: int = 0) -> Path:
    """FinBERT-shaped: finbert-tone's config.json and a BERT WordPiece vocabulary file."""
    config = json.loads(config_json.read_text())
    return build_random_model(target, config, vocab_txt, seed)


#: CoNLL-2003 tags, as the usual English NER models (dslim/bert-base-NER) name them.
TINY_NER_LABELS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def build_tiny_token_model(target: Path, planted: dict[str, str] | None = None, seed: int = 0) -> Path:
    """Save a tiny BertForTokenClassification (CoNLL labels) and its WordPiece tokenizer to ``target``.

    Without ``planted`` its weights are random (arbitrary tags). With ``planted`` (word -> tag, e.g.
    ``{"acme": "B-ORG", "corp": "I-ORG"}``), the words join the vocabulary and the weights are set so
    that each planted word gets its tag and every other token ``O``: the encoder's residual branches
    and position embeddings are zeroed, so a token's last hidden state is its own (normalised) word
    embedding, and word embeddings and classifier rows are orthogonal (Hadamard) directions, one per tag.
    Its config.json carries ``RANDOM_WEIGHTS_KEY: true`` either way.
    """
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizer

    planted = {word.lower(): tag for word, tag in (planted or {}).items()}
    unknown = sorted(set(planted.values()) - set(TINY_NER_LABELS))
    if unknown:
        raise ValueError(f"planted tags {unknown} are not among {TINY_NER_LABELS}")
    vocab = tiny_vocab()
    for word in planted:
        vocab.setdefault(word, len(vocab))
    tokenizer = BertTokenizer(
        vocab=vocab, do_lower_case=True, model_max_length=TINY_CONFIG["max_position_embeddings"]
    )
    settings = {key: value for key, value in TINY_CONFIG.items() if key not in {"id2label", "label2id"}}
    settings["id2label"] = dict(enumerate(TINY_NER_LABELS))
    settings["label2id"] = {tag: index for index, tag in enumerate(TINY_NER_LABELS)}
    settings["vocab_size"] = len(tokenizer)
    settings[RANDOM_WEIGHTS_KEY] = True
    torch.manual_seed(seed)
    model = BertForTokenClassification(BertConfig(**settings))
    if planted:
        _plant_tags(model, tokenizer, planted)
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def _plant_tags(model: Any, tokenizer: Any, planted: dict[str, str]) -> None:
    import torch

    hidden = model.config.hidden_size
    if hidden & (hidden - 1) or hidden <= len(TINY_NER_LABELS):
        raise ValueError(f"planting tags needs a power-of-two hidden size above {len(TINY_NER_LABELS)}")
    hadamard = torch.ones(1, 1)
    while hadamard.shape[0] < hidden:  # Sylvester's construction: rows after the first have mean 0
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)])
    direction = {tag: hadamard[1 + index] for index, tag in enumerate(TINY_NER_LABELS)}
    with torch.no_grad():
        embeddings = model.bert.embeddings
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        embeddings.word_embeddings.weight[:] = direction["O"]
        for word, tag in planted.items():
            embeddings.word_embeddings.weight[tokenizer.convert_tokens_to_ids(word)] = direction[tag]
        norms = [embeddings.LayerNorm]
        for layer in model.bert.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
            norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
        for norm in norms:
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        model.classifier.weight[:] = torch.stack([direction[tag] for tag in TINY_NER_LABELS])
        model.classifier.bias.zero_()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="folder to write the model into")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny test model instead of a FinBERT-shaped one"
    )
    parser.add_argument(
        "--config", type=Path, default=Path("../shared/model-config/finbert-tone-config.json")
    )
    parser.add_argument(
        "--vocab", type=Path, default=Path("../shared/model-config/bert-base-uncased-vocab.txt")
    )
    args = parser.parse_args()
    if args.tiny:
        build_tiny_model(args.target)
    else:
        build_finbert_shaped_model(args.target, args.config, args.vocab)
    print(args.target)


if __name__ == "__main__":
    main()
