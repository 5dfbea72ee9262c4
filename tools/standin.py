"""A trained stand-in for FinBERT: the FinBERT-shaped model trained on part of the benchmark's headlines.

The real weights cannot be downloaded here, and random weights make agreement figures meaningless
(their top two scores are nearly equal, so any rounding flips a label). The stand-in has FinBERT's
architecture and cost per token (``tools.random_model``'s FinBERT-shaped model, from
``../shared/model-config``) and weights trained from random initialisation on the labelled
headlines of ``../shared/data/financial-headlines.csv``, so its scores have the wide margins of a
trained model. It is benchmark material only: the product never needs it.

The split is fixed: per label (stratified), the rows are shuffled with ``random.Random(SEED)`` and
the first ``HELD_OUT_SHARE`` of each label are held out; the rest train. Labels map as the data set
documents them: 0 bearish -> negative, 1 bullish -> positive, 2 neutral -> neutral. The model reads
each headline's visible text (``model.visible_text``), as a worker does.

Built once into ``<cache>/<key>/`` (default ``~/.cache/volfefe/standin``), outside the repository;
the key is a sha256 of the config, vocabulary and data files and the training recipe, so a changed
input builds a new one. The folder holds the model (loadable by ``FinbertClassifier.load``),
``standin.json`` (the recipe, the split's row numbers, the held-out accuracy, the seconds taken) and
``held-out.csv`` (``text,label`` of the held-out rows, labels as sentiments).

    python -m tools.standin [--cache DIR] [--config ...] [--vocab ...] [--data ...]

prints the folder. Training takes about 8 minutes on 2 Sapphire Rapids cores (bf16 autocast where the CPU computes
in bf16).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``../shared`` beside the checkout; VOLFEFE_SHARED_DIR overrides it (a git worktree elsewhere).
SHARED = Path(
    os.environ.get("VOLFEFE_SHARED_DIR") or Path(__file__).resolve().parent.parent.parent / "shared"
)
CONFIG_JSON = SHARED / "model-config" / "finbert-tone-config.json"
VOCAB_TXT = SHARED / "model-config" / "bert-base-uncased-vocab.txt"
DATA_CSV = SHARED / "data" / "financial-headlines.csv"
#: where stand-ins are kept, one folder per key.
DEFAULT_CACHE = Path("~/.cache/volfefe/standin")
#: the data set's label -> the sentiment it means.
DATA_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}
#: seed of the split, the initialisation and the order of the training rows.
SEED = 18
#: share of each label held out for the agreement figures.
HELD_OUT_SHARE = 0.3
#: the training recipe: changing it builds a new stand-in.
RECIPE: dict[str, Any] = {
    #: (versions 1-5 read every headline as [UNK]: the tokenizer was built without its vocabulary)
    "version": 6,
    "epochs": 6,
    "batch_size": 32,
    "learning_rate": 5e-5,
    "warmup_share": 0.06,
    #: cross-entropy weighted by (rows / (labels x rows of the label)) ** this: keeps the model off
    #: always answering the majority label (neutral, 66%) while it learns from random weights.
    "class_weight_power": 0.5,
    "weight_decay": 0.01,
    "max_tokens": 64,
    "autocast_bf16_where_native": True,
}
STANDIN_FILE = "standin.json"
HELD_OUT_FILE = "held-out.csv"
#: config.json key naming what the model is (it has trained, not random, weights).
STANDIN_KEY = "volfefe_standin"


@dataclass(frozen=True)
class Row:
    index: int
    text: str
    sentiment: str


def read_rows(path: Path) -> list[Row]:
    """The CSV's rows with visible text, as (row number, visible text, sentiment)."""
    from model.visible_text import visible_text

    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for index, record in enumerate(csv.DictReader(handle)):
            text = visible_text(record.get("text") or "")
            label = (record.get("label") or "").strip()
            if text and label in DATA_LABELS:
                rows.append(Row(index, text, DATA_LABELS[label]))
    return rows


def split(rows: list[Row], seed: int = SEED, share: float = HELD_OUT_SHARE) -> tuple[list[Row], list[Row]]:
    """(training rows, held-out rows): per sentiment, shuffled with ``seed``, the first ``share`` held out."""
    generator = random.Random(seed)
    train: list[Row] = []
    held_out: list[Row] = []
    for sentiment in sorted({row.sentiment for row in rows}):
        group = [row for row in rows if row.sentiment == sentiment]
        generator.shuffle(group)
        cut = round(len(group) * share)
        held_out += group[:cut]
        train += group[cut:]
    return sorted(train, key=lambda row: row.index), sorted(held_out, key=lambda row: row.index)


def cache_key(config_json: Path, vocab_txt: Path, data_csv: Path) -> str:
    digest = hashlib.sha256()
    for path in (config_json, vocab_txt, data_csv):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(
        json.dumps({"recipe": RECIPE, "seed": SEED, "held_out": HELD_OUT_SHARE}, sort_keys=True).encode()
    )
    return digest.hexdigest()[:24]


def is_built(folder: Path) -> bool:
    return (folder / STANDIN_FILE).is_file() and (folder / "config.json").is_file()


def held_out_rows(folder: Path) -> list[tuple[str, str]]:
    """(text, sentiment) of a built stand-in's held-out rows."""
    with (folder / HELD_OUT_FILE).open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle)]


def ensure_standin(
    cache: Path = DEFAULT_CACHE,
    config_json: Path = CONFIG_JSON,
    vocab_txt: Path = VOCAB_TXT,
    data_csv: Path = DATA_CSV,
    log=None,
) -> Path:
    """The stand-in's folder, trained now unless one built from the same inputs is cached.

    Concurrent callers wait on a file lock while one trains.
    """
    from filelock import FileLock

    cache = cache.expanduser()
    folder = cache / cache_key(config_json, vocab_txt, data_csv)
    if is_built(folder):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if is_built(folder):
            return folder
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
        try:
            train_standin(building, config_json, vocab_txt, data_csv, log=log or _stderr)
            building.rename(folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


def _stderr(message: str) -> None:
    print(f"[standin {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def train_standin(target: Path, config_json: Path, vocab_txt: Path, data_csv: Path, log=_stderr) -> None:
    """Train the FinBERT-shaped model on the training rows and save it, its split and its accuracy to ``target``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from config import BF16_FLAGS, cpu_flags
    from model.model_marks import RANDOM_WEIGHTS_KEY

    started = time.perf_counter()
    train, held_out = split(read_rows(data_csv))
    tokenizer = BertTokenizer(vocab=str(vocab_txt), do_lower_case=True)
    if len(tokenizer) < 1000:
        raise RuntimeError(f"the vocabulary {vocab_txt} was not loaded ({len(tokenizer)} tokens)")
    settings = {
        key: value
        for key, value in json.loads(config_json.read_text()).items()
        if key not in {"architectures", "_name_or_path"}
    }
    settings["vocab_size"] = max(settings.get("vocab_size", 0), len(tokenizer))
    settings[RANDOM_WEIGHTS_KEY] = False
    config = BertConfig(**settings)
    label_ids = {name.lower(): int(index) for index, name in config.id2label.items()}
    torch.manual_seed(SEED)
    model = BertForSequenceClassification(config)
    autocast = bool(BF16_FLAGS & cpu_flags()) and RECIPE["autocast_bf16_where_native"]

    lengths = {row.index: len(tokenizer(row.text)["input_ids"]) for row in train + held_out}

    def batches(rows: list[Row], shuffle: bool, generator: random.Random | None = None):
        """Batches of rows of similar length (little padding), in shuffled order when training."""
        order = list(range(len(rows)))
        if shuffle and generator is not None:
            generator.shuffle(order)  # ties in length are broken randomly, then batches are shuffled
        order.sort(key=lambda i: lengths[rows[i].index])
        size = RECIPE["batch_size"]
        starts = list(range(0, len(order), size))
        if shuffle and generator is not None:
            generator.shuffle(starts)
        for start in starts:
            chosen = [rows[i] for i in order[start : start + size]]
            encoded = tokenizer(
                [row.text for row in chosen],
                padding=True,
                truncation=True,
                max_length=RECIPE["max_tokens"],
                return_tensors="pt",
            )
            labels = torch.tensor([label_ids[row.sentiment] for row in chosen])
            yield encoded, labels

    steps = RECIPE["epochs"] * -(-len(train) // RECIPE["batch_size"])
    warmup = max(1, int(steps * RECIPE["warmup_share"]))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=RECIPE["learning_rate"], weight_decay=RECIPE["weight_decay"], fused=True
    )
    counts = {name: sum(row.sentiment == name for row in train) for name in label_ids}
    weights = torch.zeros(len(label_ids))
    for name, index in label_ids.items():
        weights[index] = (len(train) / (len(label_ids) * max(1, counts[name]))) ** RECIPE[
            "class_weight_power"
        ]
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    log(
        f"training the FinBERT-shaped stand-in on {len(train)} headlines ({len(held_out)} held out), "
        f"{RECIPE['epochs']} epochs, {'bf16 autocast' if autocast else 'fp32'}"
    )
    generator = random.Random(SEED)
    history = []
    for epoch in range(RECIPE["epochs"]):
        model.train()
        total = 0.0
        epoch_started = time.perf_counter()
        for encoded, labels in batches(train, shuffle=True, generator=generator):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(**encoded).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item() * len(labels)
        accuracy = _accuracy(model, batches(held_out, shuffle=False))
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(total / len(train), 4),
                "held_out_accuracy_fp32": round(accuracy, 4),
                "seconds": round(time.perf_counter() - epoch_started, 1),
            }
        )
        log(f"epoch {epoch + 1}: {history[-1]}")
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.config.update({STANDIN_KEY: True})
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    with (target / HELD_OUT_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((row.text, row.sentiment) for row in held_out)
    record = {
        "what": "FinBERT-shaped BERT trained from random initialisation on part of financial-headlines.csv",
        "recipe": RECIPE,
        "seed": SEED,
        "held_out_share": HELD_OUT_SHARE,
        "data": str(data_csv),
        "train_rows": [row.index for row in train],
        "held_out_rows": [row.index for row in held_out],
        "held_out_labels": {name: sum(row.sentiment == name for row in held_out) for name in label_ids},
        "history": history,
        "held_out_accuracy_fp32": history[-1]["held_out_accuracy_fp32"],
        "majority_share": max(sum(row.sentiment == name for row in held_out) for name in label_ids)
        / len(held_out),
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    (target / STANDIN_FILE).write_text(json.dumps(record, indent=1))


def _accuracy(model, batches) -> float:
    import torch

    model.eval()
    right = seen = 0
    with torch.inference_mode():
        for encoded, labels in batches:
            predicted = model(**encoded).logits.float().argmax(-1)
            right += int((predicted == labels).sum())
            seen += len(labels)
    return right / seen if seen else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.standin", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of built stand-ins")
    parser.add_argument("--config", type=Path, default=CONFIG_JSON)
    parser.add_argument("--vocab", type=Path, default=VOCAB_TXT)
    parser.add_argument("--data", type=Path, default=DATA_CSV)
    args = parser.parse_args(argv)
    for needed in (args.config, args.vocab, args.data):
        if not needed.is_file():
            print(f"python -m tools.standin: error: {needed} is missing", file=sys.stderr)
            return 2
    folder = ensure_standin(args.cache, args.config, args.vocab, args.data)
    record = json.loads((folder / STANDIN_FILE).read_text())
    print(
        f"{folder} (held-out accuracy {record['held_out_accuracy_fp32']:.2%} on "
        f"{len(record['held_out_rows'])} headlines; majority label {record['majority_share']:.2%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
