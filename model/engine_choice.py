"""Which engine a process really runs, and the OpenVINO conversion made ready with no step a user must know.

``prepare_engine(settings)`` is what a worker (and ``volfefe run``, ``volfefe classify``) calls before
loading the model. For torch it has nothing to do. For OpenVINO it returns the cached conversion, or
builds it: under a file lock in the engine cache (``locks/<base key>.lock``), so that of the workers
that start together on an empty cache one converts and the others wait (each logs one line saying
so) and then load what it built. When OpenVINO cannot run — the extra is not installed, the
conversion fails, or failed before — the process runs torch at ``settings.torch_precision`` instead
and logs ONE warning line with the reason. A failed conversion is recorded in the cache
(``failed/<base key>``), so the next workers fall back at once instead of converting again for minutes,
and so that ``planned_engine`` (what ``volfefe reclassify`` compares stored versions to) names what
the workers really write. ``volfefe model build`` tries again and clears the record when it succeeds;
a new model, precision or library version has another key, and is tried afresh.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from errors import VolfefeError, first_line
from model.engines import ModelLoadError

if TYPE_CHECKING:
    from config import Settings
    from model.calibration import CalibrationTexts
    from model.openvino_engine import Build

#: the worker's log: RQ configures ``rq.worker`` (its children propagate to it), as workers/outage.py.
log = logging.getLogger("rq.worker.engine")

#: folder of the engine cache with one file per failed conversion, named by its base key.
FAILURES = "failed"
#: folder of the engine cache with one lock file per conversion being built.
LOCKS = "locks"


@dataclass(frozen=True)
class EngineChoice:
    """What a process runs: an engine and precision, and why not the configured ones (None: it does)."""

    engine: str
    precision: str
    #: the OpenVINO conversion's folder (None for torch).
    folder: Path | None = None
    #: one line: why the configured engine does not run here (None when it does).
    fallback_reason: str | None = None


class EngineUnavailable(VolfefeError):
    """The configured engine cannot run here; the message is one readable line."""


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None


def _fallback(settings: Settings, reason: str, warn: bool) -> EngineChoice:
    choice = EngineChoice("torch", settings.torch_precision, None, reason)
    if warn:
        log.warning(
            "warning: OpenVINO %s cannot run here (%s): running torch %s instead",
            settings.precision,
            reason,
            settings.torch_precision,
        )
    return choice


def _base_key(settings: Settings, root: Path) -> str | None:
    """The conversion's base key, or None when it cannot be known yet (a hub id not fetched so far)."""
    from model.openvino_engine import base_parts, key_of

    try:
        return key_of(base_parts(settings.model, settings.precision, settings.max_length, root))
    except ModelLoadError:
        return None


def recorded_failure(root: Path, base_key: str) -> str | None:
    """The one-line reason a conversion with ``base_key`` failed before, or None."""
    try:
        record = json.loads((root / FAILURES / base_key).read_text())
    except (OSError, ValueError):
        return None
    return f"{record.get('reason', 'unknown')} (conversion failed at {record.get('at', '?')}; "
    "`volfefe model build` tries again)"


def record_failure(root: Path, base_key: str, reason: str) -> None:
    folder = root / FAILURES
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".failure-")
    with os.fdopen(handle, "w") as file:
        json.dump({"reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds")}, file)
    os.replace(temporary, folder / base_key)


def clear_failure(root: Path, base_key: str) -> None:
    if base_key:
        (root / FAILURES / base_key).unlink(missing_ok=True)


def planned_engine(settings: Settings) -> EngineChoice:
    """What a worker starting now would run, without building anything: the configured engine, or
    torch when OpenVINO is not installed or its conversion failed before."""
    if settings.engine == "torch":
        return EngineChoice("torch", settings.precision)
    from model.openvino_engine import built_folder, cache_root

    if not openvino_installed():
        return _fallback(settings, _install_hint(), warn=False)
    root = cache_root(settings.engine_cache)
    key = _base_key(settings, root)
    if key is None:  # a hub id not fetched yet: the first worker fetches and converts it
        return EngineChoice(settings.engine, settings.precision)
    failure = recorded_failure(root, key)
    if failure is not None:
        return _fallback(settings, failure, warn=False)
    folder = built_folder(settings.model, settings.precision, settings.max_length, root)
    return EngineChoice(settings.engine, settings.precision, folder)


def _install_hint() -> str:
    from model.openvino_engine import INSTALL_HINT

    return INSTALL_HINT.replace("FINBERT_ENGINE=openvino needs", "OpenVINO needs")


def prepare_engine(settings: Settings) -> EngineChoice:
    """The engine this process runs: OpenVINO with its conversion ready (built now, under the lock,
    when none is cached), or torch, with one warning line, when OpenVINO cannot run."""
    if settings.engine == "torch":
        return EngineChoice("torch", settings.precision)
    try:
        folder = ready_conversion(settings)
    except EngineUnavailable as error:
        return _fallback(settings, str(error), warn=True)
    return EngineChoice(settings.engine, settings.precision, folder)


def ready_conversion(settings: Settings) -> Path:
    """The conversion's folder, built now unless cached; EngineUnavailable (one line) when it cannot be."""
    if not openvino_installed():
        raise EngineUnavailable(_install_hint())
    from model.openvino_engine import built_folder, cache_root

    root = cache_root(settings.engine_cache)
    key = _base_key(settings, root)
    if key is not None:  # else a hub id not fetched yet: build() fetches it
        failure = recorded_failure(root, key)
        if failure is not None:
            raise EngineUnavailable(failure)
        found = built_folder(settings.model, settings.precision, settings.max_length, root)
        if found is not None:
            return found
    return locked_build(settings).folder


def lock_path(settings: Settings, key: str | None = None) -> Path:
    """The lock file builders of this conversion take (its folder is created)."""
    from model.openvino_engine import cache_root

    root = cache_root(settings.engine_cache)
    key = key or _base_key(settings, root) or "unfetched-model"
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    return root / LOCKS / f"{key}.lock"


def locked_build(
    settings: Settings, calibration: CalibrationTexts | None = None, retry_failed: bool = False
) -> Build:
    """``openvino_engine.build`` (finds the conversion cached, or converts) under the cache's lock for
    this conversion: a process that finds the lock held logs one line and waits, then finds what the
    holder built (or the failure it recorded, unless ``retry_failed``). A failure is recorded, a
    success clears an earlier record; EngineUnavailable (one line) when it cannot be built."""
    if not openvino_installed():
        raise EngineUnavailable(_install_hint())
    from filelock import FileLock, Timeout

    from model.openvino_engine import build, built_folder, cache_root

    root = cache_root(settings.engine_cache)
    key = _base_key(settings, root)
    lock = FileLock(str(lock_path(settings, key)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info(
            "waiting for another process to build the OpenVINO %s conversion of %s (lock %s)",
            settings.precision,
            settings.model,
            lock.lock_file,
        )
        lock.acquire()
    try:
        failure = recorded_failure(root, key) if key is not None and not retry_failed else None
        if failure is not None:  # the process we waited for failed
            raise EngineUnavailable(failure)
        if (
            calibration is not None
            or key is None
            or built_folder(settings.model, settings.precision, settings.max_length, root) is None
        ):
            log.info(
                "building the OpenVINO %s conversion of %s once (cached in %s; a FinBERT-sized model "
                "takes 1-3 minutes)",
                settings.precision,
                settings.model,
                root,
            )
        try:
            result = build(settings.model, settings.precision, settings.max_length, root, calibration)
        except Exception as error:  # a conversion fails in many libraries' ways: each is one line
            reason = str(error) if isinstance(error, ModelLoadError) else _describe(error)
            failed_key = key or _base_key(settings, root)
            if failed_key is None and isinstance(error, ModelLoadError):
                raise  # the model itself cannot be read (torch could not either): its own one line
            if failed_key is not None:
                record_failure(root, failed_key, reason)
            raise EngineUnavailable(reason) from None
        clear_failure(root, key or _base_key(settings, root) or "")
        if result.converted:
            log.info(
                "built the OpenVINO %s conversion in %.0fs: %s",
                settings.precision,
                result.seconds,
                result.folder,
            )
        return result
    finally:
        lock.release()


def record_openvino_load_failure(settings: Settings, reason: str) -> EngineChoice:
    """A conversion that was built but does not load here: recorded as a failed build (so that
    ``planned_engine`` names torch too), and torch chosen with one warning line."""
    from model.openvino_engine import cache_root

    root = cache_root(settings.engine_cache)
    key = _base_key(settings, root) if openvino_installed() else None
    if key is not None:
        record_failure(root, key, reason)
    return _fallback(settings, reason, warn=True)


def _describe(error: BaseException) -> str:
    return f"conversion failed: {type(error).__name__}: {first_line(error)}"
