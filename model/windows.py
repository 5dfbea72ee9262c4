"""Long texts, never truncated silently: split into windows the model can read, and scores aggregated.

A text whose tokens fit the model's maximum is one window, exactly as a plain tokenizer call gives it
(so short texts score as ``transformers.pipeline`` scores them, and cost nothing extra). A longer text
is split at sentence boundaries into windows that each fit; a sentence longer than a window is cut
at the window's size. Every window runs in the same length-sorted forward passes as every other
text, and the text's probabilities are the mean of its windows' probabilities **weighted by each
window's token count**: every token of the post counts once, whichever window it fell in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: where a sentence ends: after . ! ? or … and the spaces that follow.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Window:
    """One model input: ``input_ids`` with the special tokens, for text ``text_index``."""

    text_index: int
    input_ids: list[int]
    #: the window's own tokens (without the special tokens): its weight in the text's score.
    tokens: int


def _pack(pieces: Sequence[list[int]], room: int) -> list[list[int]]:
    """Greedily pack sentence token lists into windows of at most ``room`` tokens, in order."""
    windows: list[list[int]] = []
    current: list[int] = []
    for piece in pieces:
        while len(piece) > room:  # a sentence longer than a window: cut at the window's size
            if current:
                windows.append(current)
                current = []
            windows.append(piece[:room])
            piece = piece[room:]
        if current and len(current) + len(piece) > room:
            windows.append(current)
            current = []
        current = current + piece
    if current:
        windows.append(current)
    return windows


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own (``[CLS]`` and ``[SEP]`` for BERT).

    Read from the tokenizer itself rather than assumed, so that any model's convention holds.
    """
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []


def split_into_windows(tokenizer, texts: Sequence[str], max_length: int) -> list[Window]:
    """The windows of every text, in text order; one window for each text that fits ``max_length``."""
    encoded = tokenizer(list(texts), truncation=False)["input_ids"]
    prefix, suffix = special_tokens(tokenizer)
    special = len(prefix) + len(suffix)
    room = max_length - special
    windows: list[Window] = []
    for index, (text, ids) in enumerate(zip(texts, encoded, strict=True)):
        if len(ids) <= max_length:
            windows.append(Window(index, ids, len(ids) - special))
            continue
        sentences = [sentence for sentence in _SENTENCE_END.split(text) if sentence.strip()]
        pieces = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        for piece in _pack(pieces, room):
            windows.append(Window(index, [*prefix, *piece, *suffix], len(piece)))
    return windows


def aggregate(
    windows: Sequence[Window], probabilities: Sequence[Sequence[float]], texts: int
) -> list[list[float]]:
    """Each text's probabilities: its windows' probabilities weighted by their token counts."""
    sums = (
        [[0.0] * len(probabilities[0]) for _ in range(texts)] if probabilities else [[] for _ in range(texts)]
    )
    weights = [0] * texts
    for window, row in zip(windows, probabilities, strict=True):
        weight = max(window.tokens, 1)
        weights[window.text_index] += weight
        sums[window.text_index] = [
            total + weight * p for total, p in zip(sums[window.text_index], row, strict=True)
        ]
    return [[total / weights[index] for total in sums[index]] for index in range(texts)]
