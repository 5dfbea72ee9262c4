"""Disjoint cores for the worker processes of one machine.

OpenVINO pins its inference threads to cores; two unpinned one-thread workers were seen landing on the
same core (101 items/s instead of 213). So with WORKER_PROCESSES > 1 each process claims its own slot
of ``cores / WORKER_PROCESSES`` cores: it takes an exclusive, non-blocking ``flock`` on
``<lock dir>/core-<n>.lock`` for every core of the first free slot, holds those locks for its
lifetime (the kernel drops them when the process ends, however it ends), and restricts itself to
those cores with ``sched_setaffinity``; OpenVINO then keeps its threads inside that set.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: lock files' folder when none is given: machine-wide, since cores are.
DEFAULT_LOCK_DIR = (
    Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"volfefe-cores-{os.getuid()}"
)

#: the open lock files of this process's claim: held (never closed) until the process ends.
_held: list[int] = []


def core_slots(cores: list[int], processes: int) -> list[list[int]]:
    """``cores`` cut into ``processes`` disjoint slots of ``len(cores) // processes`` (at least 1) each."""
    size = max(1, len(cores) // max(1, processes))
    return [cores[start : start + size] for start in range(0, size * min(processes, len(cores)), size)]


def _lock_all(lock_dir: Path, slot: list[int]) -> list[int] | None:
    handles: list[int] = []
    for core in slot:
        handle = os.open(lock_dir / f"core-{core}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            for held in handles:
                os.close(held)  # closing drops the lock
            return None
        handles.append(handle)
    return handles


def claim_cores(processes: int, lock_dir: Path | None = None) -> list[int] | None:
    """Pin this process to the first free slot of cores and keep it; the cores, or None when unpinned.

    Unpinned: one process (nothing to share), already pinned by an earlier call, or every slot taken
    by other processes (more workers than slots: logged, the process runs on all cores).
    """
    if processes <= 1:
        return None
    if _held:
        return sorted(os.sched_getaffinity(0))
    lock_dir = lock_dir or DEFAULT_LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in core_slots(sorted(os.sched_getaffinity(0)), processes):
        handles = _lock_all(lock_dir, slot)
        if handles is None:
            continue
        _held.extend(handles)
        os.sched_setaffinity(0, slot)
        log.info("pinned to cores %s (one of %d worker processes)", slot, processes)
        return slot
    log.warning("every core slot is claimed by other workers: this process is not pinned")
    return None


def release_cores() -> None:
    """Drop this process's claim (tests; a worker keeps its cores until it ends)."""
    while _held:
        with contextlib.suppress(OSError):
            os.close(_held.pop())
