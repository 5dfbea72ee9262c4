"""A FinbertWorker that also runs the parity tests' job functions (tests/parity_jobs.py).

Start it as a real process with ``rq worker ml_classification -w tests.parity_worker.ParityFinbertWorker``;
everything else (JSON only, refusals, batches, RQ's path for what the batch does not mirror) is the
production worker's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from jobs.registry import REGISTERED_JOBS, ArgumentCheck
from tests import parity_jobs
from workers.worker import FinbertWorker


class ParityFinbertWorker(FinbertWorker):
    registered_jobs: ClassVar[Mapping[str, ArgumentCheck]] = {**REGISTERED_JOBS, **parity_jobs.REGISTERED}
