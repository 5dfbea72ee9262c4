"""``--model``: an existing model folder, or ``build:DIR`` to build the FinBERT-shaped one there once;
``--standin``: the trained stand-in (``tools.standin``), built once into its cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.common import PYTHON, REPO, child_env, log
from tools.standin import SHARED

BUILD_PREFIX = "build:"
#: finbert-tone's config.json and a BERT vocabulary, beside the checkout (``../shared``, or
#: VOLFEFE_SHARED_DIR).
SHARED_CONFIG = SHARED / "model-config"
CONFIG_JSON = SHARED_CONFIG / "finbert-tone-config.json"
VOCAB_TXT = SHARED_CONFIG / "bert-base-uncased-vocab.txt"
#: the only folder inside the checkout where weights may be written (it is gitignored).
MODELS_DIR = REPO / "models"


class ModelArgumentError(ValueError):
    """``--model`` names nothing usable."""


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        (path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")
    )


def resolve_model(argument: str) -> tuple[Path, bool]:
    """The model folder for ``--model`` and whether it was built now."""
    if not argument.startswith(BUILD_PREFIX):
        path = Path(argument).expanduser().resolve()
        if not is_model_dir(path):
            raise ModelArgumentError(f"--model {argument}: not a model folder (config.json and weights)")
        return path, False
    target = Path(argument.removeprefix(BUILD_PREFIX)).expanduser().resolve()
    if not argument.removeprefix(BUILD_PREFIX):
        raise ModelArgumentError("--model build:DIR needs a folder")
    if target.is_relative_to(REPO) and not target.is_relative_to(MODELS_DIR):
        raise ModelArgumentError(
            f"--model {argument}: weights must not be written inside the repository "
            f"(use a folder outside it, or under {MODELS_DIR.relative_to(REPO)}/, which is gitignored)"
        )
    if is_model_dir(target):
        return target, False
    for needed in (CONFIG_JSON, VOCAB_TXT):
        if not needed.is_file():
            raise ModelArgumentError(f"cannot build the model: {needed} is missing")
    log(f"building the FinBERT-shaped model (random weights) into {target}")
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "tools.random_model",
            str(target),
            "--config",
            str(CONFIG_JSON),
            "--vocab",
            str(VOCAB_TXT),
        ],
        cwd=REPO,
        env=child_env(),
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not is_model_dir(target):
        raise ModelArgumentError(f"building the model failed:\n{result.stderr[-2000:]}")
    return target, True


def resolve_standin(cache: Path | None = None) -> Path:
    """The trained stand-in's folder: found in its cache, or trained now (a few minutes, once)."""
    from tools.standin import CONFIG_JSON as STANDIN_CONFIG
    from tools.standin import DATA_CSV, DEFAULT_CACHE, STANDIN_FILE, ensure_standin
    from tools.standin import VOCAB_TXT as STANDIN_VOCAB

    for needed in (STANDIN_CONFIG, STANDIN_VOCAB, DATA_CSV):
        if not needed.is_file():
            raise ModelArgumentError(f"cannot build the stand-in: {needed} is missing")
    folder = ensure_standin(cache or DEFAULT_CACHE, log=lambda message: log(f"stand-in: {message}"))
    if not (folder / STANDIN_FILE).is_file():
        raise ModelArgumentError(f"the stand-in in {folder} is incomplete")
    log(f"stand-in: {folder}")
    return folder
