"""A worker's child processes never outlive it.

RQ's ``--with-scheduler`` forks a scheduler process (``rq.scheduler.RQScheduler.start``, a fork
``multiprocessing.Process``); RQ's teardown sends it SIGTERM and waits for it without a limit, and the
scheduler only notes the signal between two of its Redis calls, which wait as long as Redis is away.
Two guards, so that it never lives on alone:

- ``children_die_with_this_process``: every process forked from the worker from then on asks the
  kernel (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be killed when the worker's thread that forked
  it ends, however the worker ends (SIGKILL, a crash, a cold shutdown); a child whose parent was gone
  before it asked kills itself. The scheduler holds no job: killing it loses nothing (its lock expires,
  or a worker's maintenance releases it).
- ``end_child``: SIGTERM, a bounded wait, then SIGKILL (the worker's teardown uses it).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from multiprocessing.process import BaseProcess

#: ``PR_SET_PDEATHSIG`` from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1

#: the pid that registered the fork hook (a forked child inherits the hook: it registers no second one).
_registered_in: int | None = None
#: the pid of the process that is forking, recorded just before the fork.
_forking_parent = 0
_prctl = None


def children_die_with_this_process() -> None:
    """From now on, each child this process forks dies with it (Linux; a no-op elsewhere). Idempotent."""
    global _registered_in, _prctl
    if _registered_in is not None or not sys.platform.startswith("linux"):
        return
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork, not in the child
    _registered_in = os.getpid()
    os.register_at_fork(before=_note_parent, after_in_child=_die_with_parent)


def _note_parent() -> None:
    global _forking_parent
    _forking_parent = os.getpid()


def _die_with_parent() -> None:
    if _prctl is None or _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != _forking_parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def end_child(process: BaseProcess, grace: float) -> None:
    """SIGTERM ``process``, wait up to ``grace`` seconds, then SIGKILL it; reaped either way."""
    if process.pid is None:
        return
    process.terminate()
    process.join(grace)
    if process.is_alive():
        process.kill()
        process.join()
