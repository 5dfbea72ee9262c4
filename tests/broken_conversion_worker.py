"""A FinbertWorker whose OpenVINO conversion fails, as a converter meeting an unsupported model would.

Only the conversion step is replaced; choosing the engine, the lock, the fallback to torch and its
warning are the product's own (tests/test_engine_default.py).
"""

from __future__ import annotations

from model import openvino_engine
from workers.worker import FinbertWorker


def _refuse(*args, **kwargs) -> None:
    raise RuntimeError("the test's converter refuses this model\n(a second line that must not be logged)")


openvino_engine._convert = _refuse


class BrokenConversionWorker(FinbertWorker):
    """FinbertWorker, with every OpenVINO conversion in this process failing."""
