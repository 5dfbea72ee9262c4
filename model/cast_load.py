"""A sentiment model's weights loaded straight into a smaller dtype, one tensor at a time, unmapped.

transformers' ``from_pretrained`` memory-maps a safetensors checkpoint, and every page it reads counts
in the process's resident memory until the model is built: loading FinBERT's 440 MB of fp32 weights to
run them in bf16 peaked at the whole fp32 file plus the bf16 copy (1,058 MB for the worker, against
669 MB this way; bench/README.md "Worker memory"). Here each tensor is read with safetensors' ``pread``
backend (no mapping) and cast as it arrives; transformers then builds the model from that state dict as
it builds it from the file. The cast is the one ``Module.to`` makes, so the weights are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, PretrainedConfig
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file


def checkpoint_files(source: str, local_only: bool) -> list[Path] | None:
    """The safetensors files of ``source`` (a folder or hub id), one or the shards of an index; None
    when it has none (a ``.bin`` checkpoint)."""
    found = {"local_files_only": local_only, "_raise_exceptions_for_missing_entries": False}
    single = cached_file(source, SAFE_WEIGHTS_NAME, **found)
    if single is not None:
        return [Path(single)]
    index = cached_file(source, SAFE_WEIGHTS_INDEX_NAME, **found)
    if index is None:
        return None
    shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
    paths = [cached_file(source, shard, **found) for shard in shards]
    return None if any(path is None for path in paths) else [Path(path) for path in paths]


def cast_state_dict(files: list[Path], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of ``files``, the floating ones in ``dtype`` (as ``Module.to`` leaves integer buffers):
    one read (pread, unmapped) and one cast at a time."""
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt", backend="pread") as weights:
            for name in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = weights.get_tensor(name)
                state[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state


def load_sequence_classifier(
    source: str, config: PretrainedConfig, dtype: str, local_only: bool
) -> torch.nn.Module | None:
    """The sequence classifier of ``source`` in ``dtype``, built from its cast weights; None when this
    way does not apply (no safetensors, or an architecture the auto class resolves another way), for
    the caller to load it the usual way."""
    model_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING.get(type(config), None)
    if not isinstance(model_class, type):
        return None
    files = checkpoint_files(source, local_only)
    if files is None:
        return None
    state = cast_state_dict(files, getattr(torch, dtype))
    return model_class.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
