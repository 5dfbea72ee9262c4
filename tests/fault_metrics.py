"""Pytest plugin: the fault suite's scenario figures, printed at the end of the run and written as JSON
to ``fault-metrics.json`` in pytest's base temporary folder (and to ``$FAULT_METRICS_JSON`` when set).

Enabled from tests/conftest.py. Under pytest-xdist each worker hands its figures to the controller,
which prints and writes them all.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

#: scenario -> its figures, in the session's stash.
METRICS = pytest.StashKey[dict[str, dict[str, Any]]]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    store = session.config.stash.get(METRICS, None)
    if not store:
        return
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: its figures go to the controller
        session.config.workeroutput["fault_metrics"] = json.dumps(store, default=str)  # type: ignore[attr-defined]
        return
    text = json.dumps(store, indent=2, sort_keys=True, default=str)
    targets = [Path(str(session.config._tmp_path_factory.getbasetemp())) / "fault-metrics.json"]  # type: ignore[attr-defined]
    if os.environ.get("FAULT_METRICS_JSON"):
        targets.append(Path(os.environ["FAULT_METRICS_JSON"]))
    for target in targets:
        with contextlib.suppress(OSError):
            target.write_text(text + "\n")


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    store = config.stash.get(METRICS, None)
    if not store:
        return
    terminalreporter.section("fault suite figures")
    for scenario, figures in sorted(store.items()):
        terminalreporter.write_line(f"{scenario}: {json.dumps(figures, default=str)}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist's controller: gather each worker's scenario figures for the summary and the JSON."""
    figures = getattr(node, "workeroutput", {}).get("fault_metrics")
    if figures:
        store = node.config.stash.setdefault(METRICS, {})
        for scenario, values in json.loads(figures).items():
            store.setdefault(scenario, {}).update(values)
