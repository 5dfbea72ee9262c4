"""FinBERT as a batch classifier: load once, classify lists of texts in length-sorted forward passes.

transformers and torch are imported where a model is read with them, not with this module: an
OpenVINO worker reads its tokenizer from the conversion (``model.saved_tokenizer``) and never imports
either (importing transformers' config classes imports torch, ~200 MB of a worker's memory).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, ENGINES, PRECISIONS
from errors import first_line
from model.engines import Engine, EngineLoadError, ModelLoadError, TorchEngine, engine_tag, load_dtype
from model.labels import LabelError, sentiment_labels
from model.model_marks import RANDOM_WEIGHTS_TAG, config_has_random_weights
from model.passes import padded_width, plan_passes
from model.saved_tokenizer import ModelFacts
from model.windows import aggregate, split_into_windows

log = logging.getLogger(__name__)

#: seconds to wait for the model hub before calling it unreachable.
HUB_PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Prediction:
    sentiment: str
    confidence: float
    raw_scores: dict[str, float] = field(default_factory=dict)
    #: the text's tokens (without special tokens) and the windows they were read in.
    tokens: int = 0
    windows: int = 1
    #: seconds of model time per text in the forward passes that classified it.
    seconds: float = 0.0


@dataclass(frozen=True)
class Classified:
    """A batch's predictions, in input order, and the rows of each forward pass that made them."""

    predictions: list[Prediction]
    passes: list[int]


#: torch threads this process asked for (``configure_threads``), set when a torch model is loaded.
_torch_threads: int | None = None


def configure_threads(threads: int) -> None:
    """Keep the tokenizer on the calling thread (workers own their cores) and give torch ``threads``
    threads, now if it is loaded, else when a model is read with it (``_load_pretrained``): an
    OpenVINO worker never imports torch."""
    global _torch_threads
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _torch_threads = threads
    if "torch" in sys.modules:
        configure_torch(threads)


def configure_torch(threads: int) -> None:
    """Set torch's thread count before any torch work (it is fixed once inference starts)."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)


def _hub_reachable(endpoint: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=HUB_PROBE_TIMEOUT):
            return True
    except OSError:
        return False


#: what a loading error tells the user to do (``{setting}``: where the model is configured).
FINBERT_LOAD_FIX = (
    "set {setting} to a local model folder (config.json, weights and tokenizer files); for a trial "
    "with random weights (meaningless labels): .venv/bin/python -m tools.random_model --tiny models/tiny "
    "then FINBERT_MODEL=models/tiny ./scripts/demo"
)


def _load_pretrained(
    source: str,
    weights: bool = True,
    model_class: type | None = None,
    setting: str = "FINBERT_MODEL",
    fix: str = FINBERT_LOAD_FIX,
    dtype: str = "float32",
):
    """Tokenizer and model (or only its config, without ``weights``) from a local folder, the local
    cache, or the hub, in that order; the weights in ``dtype`` (a torch dtype's name), each cast as it
    is read, so that a bf16 model never holds an fp32 copy of itself in memory.

    ``model_class`` is the transformers auto class of the model (a sequence classifier for sentiment, a
    token classifier for entities); errors name the setting ``setting`` and end with ``fix``.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers import logging as transformers_logging

    from model.cast_load import load_sequence_classifier

    model_class = model_class or AutoModelForSequenceClassification
    if weights and _torch_threads is not None:
        configure_torch(_torch_threads)  # before the model's first torch work
    fix = fix.replace("{setting}", setting)
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1  # hub ids: "org/name"
    if looks_like_path and not Path(source).expanduser().is_dir():
        raise ModelLoadError(f"cannot load {setting}={source!r}: no such folder; {fix}")
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    local = Path(source).expanduser().is_dir()
    attempts = [True] if local else [True, False]  # local files only first: no network when cached
    error: BaseException | None = None
    for local_only in attempts:
        if not local_only:
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE or not _hub_reachable(constants.ENDPOINT):
                raise ModelLoadError(
                    f"cannot load {setting}={source!r}: the model hub ({constants.ENDPOINT}) cannot be "
                    f"reached and the model is not in the local cache; {fix}"
                )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            if not weights:
                return tokenizer, AutoConfig.from_pretrained(source, local_files_only=local_only)
            model = None
            if dtype != "float32" and model_class is AutoModelForSequenceClassification:
                config = AutoConfig.from_pretrained(source, local_files_only=local_only)
                model = load_sequence_classifier(source, config, dtype, local_only)
            if model is None:
                model = model_class.from_pretrained(source, local_files_only=local_only, dtype=dtype)
            return tokenizer, model
        except Exception as failure:  # transformers raises OSError, ValueError, HTTP errors...
            error = failure
    raise ModelLoadError(f"cannot load {setting}={source!r}: {first_line(error)}; {fix}") from None


def read_model_config(source: str, setting: str = "FINBERT_MODEL") -> Any:
    """``source``'s config, read as a worker reads it but without the weights; ModelLoadError (the
    worker's one line) when the model cannot be read: commands check this before they start anything."""
    return _load_pretrained(source, weights=False, setting=setting)[1]


def _model_version(
    source: str,
    revision: str | None,
    precision: str,
    random_weights: bool = False,
    engine: str = "torch",
) -> str:
    """``<hub id or folder>[@<revision>][+random-weights]+<precision>`` for torch, ``...+openvino-<precision>``
    for another engine (see model.model_marks, model.engines.engine_tag)."""
    name = str(Path(source).resolve()) if Path(source).is_dir() else source
    parts = [f"{name}@{revision[:12]}" if revision else name]
    if random_weights:
        parts.append(RANDOM_WEIGHTS_TAG)
    return "+".join([*parts, engine_tag(engine, precision)])


def _check_choices(precision: str, engine: str) -> None:
    if precision not in PRECISIONS:
        raise ModelLoadError(f"FINBERT_PRECISION={precision!r} must be one of {', '.join(PRECISIONS)}")
    if engine not in ENGINES:
        raise ModelLoadError(f"FINBERT_ENGINE={engine!r} must be one of {', '.join(ENGINES)}")


def configured_model_version(source: str, precision: str, engine: str = "torch") -> str:
    """The ``model_version`` a worker loading ``source`` at ``precision`` in ``engine`` will write, read
    from the model's config alone (no weights): what ``volfefe reclassify`` compares stored classifications to."""
    from transformers import AutoConfig

    _check_choices(precision, engine)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except Exception:
        try:
            config = AutoConfig.from_pretrained(source)
        except Exception as error:
            raise ModelLoadError(
                f"cannot read the config of FINBERT_MODEL={source!r}: {first_line(error)}"
            ) from None
    random_weights = config_has_random_weights(config)
    return _model_version(source, getattr(config, "_commit_hash", None), precision, random_weights, engine)


def _load_conversion(
    source: str, precision: str, max_length: int, engine_cache: Path | None, threads: int | None, setting: str
) -> tuple[Engine, Any, ModelFacts]:
    """The OpenVINO conversion of ``source``, its tokenizer and the model's facts: read from the
    conversion when it holds them (no transformers, no torch), else with transformers.

    EngineLoadError (one line) when the conversion is missing or does not compile here."""
    from model.openvino_engine import load_openvino_engine

    try:
        conversion = load_openvino_engine(source, precision, max_length, engine_cache, threads)
    except ModelLoadError as error:  # no conversion, or the extra is missing
        raise EngineLoadError(str(error)) from None
    except Exception as error:  # OpenVINO's own errors (a conversion that does not compile)
        raise EngineLoadError(
            f"cannot load the OpenVINO {precision} conversion of FINBERT_MODEL={source!r}: {first_line(error)}"
        ) from None
    if conversion.saved is not None:
        tokenizer, facts = conversion.saved
        return conversion.engine, tokenizer, facts
    tokenizer, config = _load_pretrained(source, weights=False, setting=setting)
    return conversion.engine, tokenizer, ModelFacts.of(config, tokenizer)


class FinbertClassifier:
    """A loaded sequence-classification model (behind an engine) and its tokenizer."""

    def __init__(
        self,
        engine: Engine,
        tokenizer,
        labels: Sequence[str],
        model_version: str,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.model_version = model_version
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        source: str,
        precision: str = "fp32",
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        labels: Sequence[str] | None = None,
        engine: str = "torch",
        engine_cache: Path | None = None,
        threads: int | None = None,
        setting: str = "FINBERT_MODEL",
    ) -> FinbertClassifier:
        """Load ``source`` (hub id or local folder) at ``precision`` in ``engine``; raise ModelLoadError
        on any failure (EngineLoadError: the model is fine, its OpenVINO conversion is not). ``openvino``
        reads the conversion built in ``engine_cache`` (``model.engine_choice`` builds it; this raises
        when there is none) and runs ``threads`` inference threads; it never holds the torch model."""
        _check_choices(precision, engine)
        started = time.perf_counter()
        if engine == "torch":
            tokenizer, loaded = _load_pretrained(source, setting=setting, dtype=load_dtype(precision))
            runner: Engine = TorchEngine(loaded, precision, tokenizer)
            facts = ModelFacts.of(loaded.config, tokenizer)
        else:
            runner, tokenizer, facts = _load_conversion(
                source, precision, max_length, engine_cache, threads, setting
            )
        labels_setting = "FINBERT_LABELS" if setting == "FINBERT_MODEL" else f"{setting} (option labels=)"
        try:
            names = sentiment_labels(facts.id2label, source, labels, labels_setting)
        except LabelError as error:
            raise ModelLoadError(f"cannot use {setting}={source!r}: {error}") from None
        limit = min(max_length, facts.max_position_embeddings or max_length)
        version = _model_version(source, facts.revision, precision, facts.random_weights, engine)
        classifier = cls(runner, tokenizer, names, version, limit, batch_size)
        classifier.classify(
            ["warm up"]
        )  # pages the weights in and primes kernels before the first real batch
        log.info("loaded model %s in %.2fs", classifier.model_version, time.perf_counter() - started)
        return classifier

    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in input order (see ``classify_batch``)."""
        return self.classify_batch(texts).predictions

    def classify_batch(self, texts: Sequence[str]) -> Classified:
        """One prediction per text, in input order, and the rows of each forward pass that made them.

        Texts longer than the model's maximum are read in windows (``model.windows``), never
        truncated; all windows run in forward passes sorted by token length, cut where they pad the
        fewest tokens (``model.passes``).
        """
        if not texts:
            return Classified([], [])
        windows = split_into_windows(self.tokenizer, texts, self.max_length)
        passes = plan_passes(
            [len(window.input_ids) for window in windows], self.batch_size, width_step=self.engine.width_step
        )
        probabilities: list[list[float]] = [[] for _ in windows]
        started = time.perf_counter()
        for chunk in passes:
            rows = self._forward([windows[i].input_ids for i in chunk]).tolist()
            for index, row in zip(chunk, rows, strict=True):
                probabilities[index] = row
        seconds = (time.perf_counter() - started) / len(texts)
        tokens = [0] * len(texts)
        counts = [0] * len(texts)
        for window in windows:
            tokens[window.text_index] += window.tokens
            counts[window.text_index] += 1
        results = []
        for index, row in enumerate(aggregate(windows, probabilities, len(texts))):
            best = max(range(len(row)), key=row.__getitem__)
            results.append(
                Prediction(
                    sentiment=self.labels[best],
                    confidence=float(row[best]),
                    raw_scores={label: float(score) for label, score in zip(self.labels, row, strict=True)},
                    tokens=tokens[index],
                    windows=counts[index],
                    seconds=seconds,
                )
            )
        return Classified(results, [len(chunk) for chunk in passes])

    def _forward(self, input_ids: list[list[int]]) -> np.ndarray:
        """Softmax probabilities for a batch of token id lists (padded to the longest)."""
        ids, mask = pad_batch(
            input_ids, self.tokenizer.pad_token_id or 0, self.engine.width_step, self.max_length
        )
        return self.engine.forward(ids, mask)


def pad_batch(
    input_ids: Sequence[Sequence[int]], pad: int, width_step: int = 1, max_width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64) for token id lists padded to the longest, rounded
    up to a multiple of ``width_step`` (never past ``max_width``, the model's positions)."""
    longest = max(len(row) for row in input_ids)
    width = padded_width(longest, width_step)
    if max_width is not None:
        width = max(longest, min(width, max_width))
    ids = np.full((len(input_ids), width), pad, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, tokens in enumerate(input_ids):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask
