"""Shared helpers: the texts, child processes and their clean-up, memory figures, machine facts."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: the project checkout (``bench/..``).
REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RQ = str(Path(sys.executable).with_name("rq"))
#: CPU flags worth naming in a report about CPU inference.
INTERESTING_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)


def load_texts(path: Path, limit: int | None = None) -> list[str]:
    """The ``text`` column of a CSV, as stored (raw); rows with no visible text are left out."""
    from model.visible_text import visible_text

    with path.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle) if visible_text(row.get("text") or "")]
    return texts[:limit] if limit is not None else texts


def evenly_spaced(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items spread over the whole sequence (all of it when it is shorter)."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]


def child_env(**settings: str) -> dict[str, str]:
    """The environment for a child process: ours without FINBERT_*/TORCH_* settings, plus ``settings``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FINBERT_", "TORCH_", "WORKER_PROCESSES", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
    )
    env.update(settings)
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig``, wait, then SIGKILL; afterwards kill whatever is left of its process group.

    Children are started with ``start_new_session=True``, so their group id is their own pid and
    holds only what they started themselves (an rq worker forks its scheduler).
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def shielded_from_signals() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while clean-up runs, so that a second Ctrl-C cannot leave servers behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so that ``finally`` blocks clean up on both."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, handler)


#: /proc/PID/status fields reported, by the name used in the results.
STATUS_FIELDS = {
    "VmHWM": "peak_rss_mb",
    "VmRSS": "rss_mb",
    "RssAnon": "rss_anon_mb",
    "RssFile": "rss_file_mb",
}


def proc_status_mb(pid: int | str) -> dict[str, float]:
    """Peak resident set (VmHWM), resident set now, and its anonymous and file-backed parts, in MB.

    File-backed pages are mostly the memory-mapped weights (safetensors): page cache that every
    process mapping the same file shares, unlike anonymous memory.
    """
    figures: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in STATUS_FIELDS:
                figures[STATUS_FIELDS[name]] = int(value.split()[0]) / 1024
    return figures


def children_uss_mb(pid: int) -> float | None:
    """Memory unique to the children of ``pid`` (an rq worker's forked scheduler), in MB."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return None
    total = 0.0
    for child in children:
        with contextlib.suppress(psutil.Error):
            total += child.memory_full_info().uss / 2**20
    return total


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def percentile(values: Sequence[float], share: float) -> float:
    """Linear-interpolated percentile (``share`` in 0..1) of non-empty ``values``."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    ram_gb: float
    flags: tuple[str, ...]
    python: str
    torch: str
    transformers: str
    rq: str
    kernel: str

    @property
    def accelerators(self) -> str:
        avx512 = "yes" if "avx512f" in self.flags else "no"
        amx = "yes" if any(flag.startswith("amx") for flag in self.flags) else "no"
        return f"AVX-512 {avx512}, AMX {amx}"


def machine() -> Machine:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags_line = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.MULTILINE)

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return Machine(
        cpu_model=model.group(1).strip() if model else platform.processor() or "unknown",
        cores=os.cpu_count() or 1,
        ram_gb=round(int(total_kb.group(1)) / 2**20, 1) if total_kb else 0.0,
        flags=tuple(flag for flag in INTERESTING_FLAGS if flag in flags),
        python=platform.python_version(),
        torch=version("torch"),
        transformers=version("transformers"),
        rq=version("rq"),
        kernel=platform.release(),
    )


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
