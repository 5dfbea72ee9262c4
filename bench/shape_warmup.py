"""Diagnostic: what a forward pass at a shape the engine has not met yet costs, against the same pass again.

    python -m bench.shape_warmup --model DIR [--precision bf16] [--threads 1]

oneDNN builds its kernels per input shape; the ceiling's warm pass meets each of its shapes once before
it is timed, a worker meets them as posts come. Two sets of passes, each run twice in a row: batches
of 32 at every length from 20 to 59 tokens, and batches of 1 to 31 at 30 tokens. Prints milliseconds
per pass, first time and again.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

#: (name, shapes) of each set: (batch, tokens) pairs.
SHAPE_SETS: list[tuple[str, list[tuple[int, int]]]] = [
    ("batch 32, every length 20..59", [(32, length) for length in range(20, 60)]),
    ("batch 1..31, 30 tokens", [(batch, 30) for batch in range(1, 32)]),
]


def timed_passes(
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray], shapes: list[tuple[int, int]]
) -> float:
    """Milliseconds per pass over ``shapes`` (random token ids, no padding)."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for batch, tokens in shapes:
        ids = rng.integers(1000, 20000, size=(batch, tokens)).astype(np.int64)
        forward(ids, np.ones((batch, tokens), dtype=np.int64))
    return (time.perf_counter() - started) * 1000 / len(shapes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shape_warmup", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", required=True, help="a FinBERT-shaped model folder (bench.run --model build:DIR)"
    )
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "int8"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from model.engines import TorchEngine

    torch.set_num_threads(args.threads)
    engine = TorchEngine(  # with the tokenizer, as a worker's: its first-row form where it is checked
        AutoModelForSequenceClassification.from_pretrained(args.model),
        args.precision,
        AutoTokenizer.from_pretrained(args.model),
    )
    timed_passes(engine.forward, [(32, 40), (32, 40)])  # the first pass's one-off costs
    print(f"torch {args.precision}, {args.threads} thread(s): ms per forward pass")
    print("| shapes | first time | again | first / again |")
    print("| --- | --- | --- | --- |")
    for name, shapes in SHAPE_SETS:
        first = timed_passes(engine.forward, shapes)
        again = timed_passes(engine.forward, shapes)
        print(f"| {name} | {first:.1f} | {again:.1f} | {first / again:.2f} |")


if __name__ == "__main__":
    main()
