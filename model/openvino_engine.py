"""OpenVINO: the model converted once (by the first worker, or ``volfefe model build``), cached outside the
repository, compiled at load.

A conversion lives in ``<VOLFEFE_ENGINE_CACHE>/<key>/`` (``model.xml``, ``model.bin``, ``build.json``). The
key is a sha256 over the model's identity (a folder: name, size and sha256 of its config and weight
files; a hub id: id and resolved revision), the engine, the precision, the library versions, the
maximum length, the conversion recipe and, for int8, the calibration texts. File hashes are remembered
in ``hashes/`` per (path, size, mtime, inode), so a worker starting on a cached conversion does not
read the weights again. A worker finds its
conversion through ``current/<base key>``, where the base key leaves the calibration texts out (a
worker cannot know which texts the user calibrated on); every build points it at the folder it made
or reused. Folders are built in a temporary folder and renamed into place, so a reader never sees
half a conversion.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from config import DEFAULT_ENGINE_CACHE
from model import saved_tokenizer
from model.calibration import CalibrationTexts, sample_texts
from model.engines import ModelLoadError

log = logging.getLogger(__name__)

ENGINE = "openvino"
INSTALL_HINT = (
    "FINBERT_ENGINE=openvino needs openvino and nncf, dependencies this environment lacks: pip install -e ."
)
#: bump when the way a model is converted changes: every cached conversion is then rebuilt.
#: 2: int8 without SmoothQuant (``_quantize``).
#: 3: the tokenizer and the model's facts saved beside the IR (``model.saved_tokenizer``).
#: 4: a BERT classifier's last layer for the first token only (``model.cls_only``).
RECIPE = 4
#: files of a model folder whose bytes decide the conversion.
IDENTITY_PATTERNS = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")
IR_FILE = "model.xml"
RECORD_FILE = "build.json"
#: what a build record says of the model's last layer (``model.cls_only``).
LAST_LAYER_FIRST_TOKEN = "first token only"
LAST_LAYER_WHOLE = "whole"
#: folder of pointer files ``<base key>`` -> the key of the conversion a worker loads.
POINTERS = "current"
#: OpenVINO's performance hint: one synchronous request per forward pass wants every thread on it
#: (THROUGHPUT splits the threads into streams that a single request cannot use together).
PERFORMANCE_HINT = "LATENCY"


def import_openvino() -> Any:
    """The ``openvino`` module, or ModelLoadError naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise ModelLoadError(INSTALL_HINT) from None
    return openvino


def _import_nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise ModelLoadError(INSTALL_HINT) from None
    return nncf


def _library_versions() -> dict[str, str]:
    try:
        return {name: metadata.version(name) for name in ("openvino", "nncf", "transformers", "torch")}
    except metadata.PackageNotFoundError:
        raise ModelLoadError(INSTALL_HINT) from None


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def remembered_sha256(path: Path, memo: Path | None) -> str:
    """``path``'s sha256, remembered in ``memo`` (a folder) per (path, size, mtime_ns, inode, device):
    a worker that starts on a cached conversion does not read 440 MB of weights again to find its key.
    A file written anew gets a new mtime (or inode), so its bytes are hashed again."""
    if memo is None:
        return _file_sha256(path)
    facts = path.stat()
    identity = f"{path.resolve()}\0{facts.st_size}\0{facts.st_mtime_ns}\0{facts.st_ino}\0{facts.st_dev}"
    entry = memo / hashlib.sha256(identity.encode()).hexdigest()
    try:
        remembered = entry.read_text().strip()
        if len(remembered) == 64:
            return remembered
    except OSError:
        pass
    digest = _file_sha256(path)
    try:
        memo.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=memo, prefix=".hash-")
        with os.fdopen(handle, "w") as file:
            file.write(digest + "\n")
        os.replace(temporary, entry)
    except OSError:
        pass  # a read-only cache: hashed again next time
    return digest


def model_identity(source: str, memo: Path | None = None) -> dict[str, Any]:
    """What makes two models the same: a folder's config and weight files, or a hub id at its revision.
    File hashes are remembered in ``memo`` (``remembered_sha256``)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        files = sorted({path for pattern in IDENTITY_PATTERNS for path in folder.glob(pattern)})
        return {
            "files": [
                {"name": path.name, "size": path.stat().st_size, "sha256": remembered_sha256(path, memo)}
                for path in files
            ]
        }
    return {"hub_id": source, "revision": cached_revision(source)}


def cached_revision(hub_id: str) -> str:
    """The commit of ``hub_id`` in the local model cache, as transformers reads it (the snapshot folder
    its config.json resolves to), without importing transformers, which imports torch."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config_file = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # not a valid hub id
        config_file = None
    if not isinstance(config_file, str):
        raise ModelLoadError(
            f"cannot convert FINBERT_MODEL={hub_id!r}: it is neither a folder nor in the local model cache"
        )
    return Path(config_file).parent.name


def _cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def int8_overflow_fix() -> str:
    """NNCF's overflow fix for this CPU: without VNNI, int8 multiply-adds saturate their int16
    intermediate sums (on the tiny test model 20 of 62 labels flipped, 4 with the fix), so weights
    are quantized to 7 bits in every layer; with VNNI only the first layer needs it (NNCF's default)."""
    return "first_layer_only" if _cpu_has_vnni() else "enable"


#: folder of the engine cache remembering the sha256 of model files (``remembered_sha256``).
HASHES = "hashes"


def base_parts(source: str, precision: str, max_length: int, root: Path | None = None) -> dict[str, Any]:
    """Every part of the key except the calibration texts (file hashes remembered under ``root``)."""
    parts = {
        "recipe": RECIPE,
        "model": model_identity(source, root / HASHES if root is not None else None),
        "engine": ENGINE,
        "precision": precision,
        "max_length": max_length,
        "versions": _library_versions(),
    }
    if precision == "int8":
        parts["overflow_fix"] = int8_overflow_fix()
    return parts


def key_of(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_root(configured: Path | None) -> Path:
    return (configured or Path(DEFAULT_ENGINE_CACHE)).expanduser()


def built_folder(source: str, precision: str, max_length: int, root: Path) -> Path | None:
    """The conversion a worker would load for these settings, or None when none was built."""
    pointer = root / POINTERS / key_of(base_parts(source, precision, max_length, root))
    try:
        folder = root / pointer.read_text().strip()
    except OSError:
        return None
    return folder if (folder / IR_FILE).is_file() and (folder / RECORD_FILE).is_file() else None


@dataclass(frozen=True)
class Build:
    folder: Path
    #: seconds this call took (the conversion's own are in ``record["seconds"]``).
    seconds: float
    #: True when this call converted; False when it found the conversion cached.
    converted: bool
    record: dict[str, Any]


def build(
    source: str,
    precision: str,
    max_length: int,
    root: Path,
    calibration: CalibrationTexts | None = None,
) -> Build:
    """Convert ``source`` for OpenVINO at ``precision`` into the cache unless its key is there already.

    int8 is quantized by NNCF (post-training, transformer mode) on ``calibration`` (default: the
    shipped sample). Raises ModelLoadError when the extra is missing or the model cannot be loaded.
    """
    ov = import_openvino()
    started = time.perf_counter()
    try:
        base = base_parts(source, precision, max_length, root)
    except ModelLoadError:
        if Path(source).expanduser().is_dir():
            raise
        from model.classifier import _load_pretrained

        _load_pretrained(source, weights=False)  # a hub id met for the first time: fetch its config
        base = base_parts(source, precision, max_length, root)
    parts = dict(base)
    if precision == "int8":
        calibration = calibration or sample_texts()
        parts["calibration_sha256"] = calibration.sha256
    else:
        calibration = None
    key = key_of(parts)
    folder = root / key
    converted = False
    if not (folder / IR_FILE).is_file():
        _convert(ov, source, precision, max_length, root, folder, parts, calibration, key)
        converted = True
    _point(root, key_of(base), key)
    record = json.loads((folder / RECORD_FILE).read_text())
    return Build(folder, time.perf_counter() - started, converted, record)


def _convert(
    ov: Any,
    source: str,
    precision: str,
    max_length: int,
    root: Path,
    folder: Path,
    parts: dict[str, Any],
    calibration: CalibrationTexts | None,
    key: str,
) -> None:
    import torch

    from model.classifier import _load_pretrained
    from model.cls_only import CHECK_TEXTS, cls_only

    started = time.perf_counter()
    tokenizer, model = _load_pretrained(source)
    model = model.eval().float()
    facts = saved_tokenizer.ModelFacts.of(model.config, tokenizer)
    limit = min(max_length, getattr(model.config, "max_position_embeddings", max_length))  # as the classifier
    example = tokenizer(list(CHECK_TEXTS), padding=True, return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        # the trace fixes two shape checks that hold for every input of ours (mask as long as the ids)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecations the tracer touches
        first_row_only = cls_only(model, example["input_ids"], example["attention_mask"])
        converted = ov.convert_model(
            model if first_row_only is None else first_row_only,
            example_input={"input_ids": example["input_ids"], "attention_mask": example["attention_mask"]},
        )
    unquantized = [] if first_row_only is None else first_row_only.first_row_patterns()
    del model, first_row_only  # the torch copy is not needed past the trace
    if calibration is not None:
        # NNCF draws progress bars on standard output: `volfefe classify` writes its JSON lines there.
        with contextlib.redirect_stdout(sys.stderr):
            converted = _quantize(
                converted,
                calibration,
                tokenizer,
                limit,
                parts["overflow_fix"],
                unquantized,
            )
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        # fp16-compressed weights would make "fp32" a lie; bf16 is an inference hint on full weights.
        ov.save_model(converted, building / IR_FILE, compress_to_fp16=False)
        if saved_tokenizer.can_save(tokenizer):  # else workers read the tokenizer with transformers
            saved_tokenizer.save(building, tokenizer, facts)
        record = {
            "key": key,
            "parts": parts,
            "seconds": round(time.perf_counter() - started, 2),
            "calibration": None
            if calibration is None
            else {
                "source": calibration.source,
                "texts": len(calibration.texts),
                "sha256": calibration.sha256,
            },
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "last_layer": LAST_LAYER_FIRST_TOKEN if unquantized else LAST_LAYER_WHOLE,
        }
        (building / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        try:
            building.rename(folder)
        except OSError:
            if not (folder / IR_FILE).is_file():  # not merely another builder finishing first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _quantize(
    converted: Any,
    calibration: CalibrationTexts,
    tokenizer: Any,
    max_length: int,
    overflow_fix: str,
    unquantized: list[str],
) -> Any:
    """NNCF post-training int8 in transformer mode, one calibration window per sample, SmoothQuant off,
    the operations named by ``unquantized`` (regular expressions) left in f32.

    NNCF's transformer mode smooths MatMul inputs (alpha 0.95) by default. On two trained stand-ins
    (bench/README.md, "OpenVINO int8 without SmoothQuant") it moved 3 and 7 of 716 held-out labels
    (accuracy -0.14 and -0.84 points); without it, 2 and 2 (-0.28 and -0.14), at the same speed.

    The last layer's first-row operations (``model.cls_only``) stay in f32: they run one row a text, so
    int8 saves little there, and calibrated on one row a sample they were the largest int8 error on the
    tiny model (largest probability difference 0.50 in int8, 0.083 with them in f32, 0.127 before the
    first-row form). On the stand-in's 716 held-out headlines, labels kept against torch fp32: 714
    before the first-row form, 715 with it all in int8, 713 as built here (bench/README.md): one or two
    near-ties either way.
    """
    from model.classifier import pad_batch
    from model.windows import split_into_windows

    nncf = _import_nncf()
    pad = tokenizer.pad_token_id or 0
    samples = []
    for window in split_into_windows(tokenizer, list(calibration.texts), max_length):
        ids, mask = pad_batch([window.input_ids], pad)
        samples.append({"input_ids": ids, "attention_mask": mask})
    return nncf.quantize(
        converted,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        ignored_scope=nncf.IgnoredScope(patterns=unquantized, validate=False) if unquantized else None,
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            overflow_fix=nncf.OverflowFix(overflow_fix),
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1),  # -1: off
        ),
    )


def _point(root: Path, base_key: str, key: str) -> None:
    """Make ``key`` the conversion workers load for ``base_key`` (atomic replace)."""
    pointers = root / POINTERS
    pointers.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=pointers, prefix=".pointer-")
    with os.fdopen(handle, "w") as file:
        file.write(key + "\n")
    os.replace(temporary, pointers / base_key)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


#: tokens a pass's width is a multiple of. OpenVINO's CPU plugin keeps memory for every input shape
#: it has run: on the FinBERT shape, a worker's RSS went from 460 MB after loading to 945 MB over the
#: 65 shapes of the shipped headlines, and to 705 MB with widths in steps of 8, at the same speed
#: (bench/README.md, "OpenVINO memory and input shapes").
WIDTH_STEP = 8


#: every engine this process compiled, kept until it exits. OpenVINO's CPU plugin gives the thread
#: that runs a model an alternate signal stack and, when the model is freed, puts back the one it
#: found: free two models in the order they were made and the thread is left pointing at freed
#: memory. Python's signal handlers run on that stack, so the next SIGALRM (a job timeout) or
#: SIGTERM killed the process with SIGSEGV (tests/test_saved_tokenizer.py). Workers keep their
#: models for life anyway; this makes it true of every engine, NNCF's calibration runs aside.
_LIVE_ENGINES: list[OpenVinoEngine] = []


class OpenVinoEngine:
    """A compiled OpenVINO model on the CPU and one inference request reused for every batch."""

    width_step = WIDTH_STEP

    def __init__(self, ir_file: Path, precision: str, threads: int | None = None) -> None:
        ov = import_openvino()
        core = ov.Core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": PERFORMANCE_HINT,
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(ir_file), "CPU", config)
        self.request = self.compiled.create_infer_request()
        #: what OpenVINO really computes in: f32 where a bf16 hint meets a CPU without bf16.
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if precision == "bf16" and self.inference_precision != "bf16":
            log.warning("this CPU has no bf16 instructions: OpenVINO runs the bf16 model in f32")
        _LIVE_ENGINES.append(self)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        outputs = self.request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return softmax(outputs[0])


@dataclass(frozen=True)
class LoadedConversion:
    engine: OpenVinoEngine
    #: the tokenizer and model facts saved with the conversion (None: read them with transformers).
    saved: tuple[saved_tokenizer.SavedTokenizer, saved_tokenizer.ModelFacts] | None


def load_openvino_engine(
    source: str, precision: str, max_length: int, engine_cache: Path | None, threads: int | None
) -> LoadedConversion:
    """Compile the conversion built for these settings, with the tokenizer saved beside it; ModelLoadError
    (one line) when there is none."""
    import_openvino()
    root = cache_root(engine_cache)
    folder = built_folder(source, precision, max_length, root)
    if folder is None:
        raise ModelLoadError(
            f"no OpenVINO {precision} conversion of FINBERT_MODEL={source!r} in {root}: "
            "run `volfefe model build` (or start a worker: the first one converts, once)"
        )
    return LoadedConversion(
        OpenVinoEngine(folder / IR_FILE, precision, threads), saved_tokenizer.load(folder)
    )
