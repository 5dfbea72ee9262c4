"""``volfefe model build``: convert the configured model for its engine once, before any worker starts.

Optional: the first worker that needs the conversion builds it (the others wait), so this only moves
the wait before the workers start, calibrates int8 on your own contents (``--calibrate-from-db``), or
tries again after a conversion failed (workers then run torch, and do not try again by themselves).
The conversion is cached outside the repository (VOLFEFE_ENGINE_CACHE) and rebuilt only when its key
changes (model files, precision, library versions, maximum length, calibration texts).
"""

from __future__ import annotations

import argparse
import sys
import time

from config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["build"],
        help="build: convert FINBERT_MODEL for FINBERT_ENGINE at FINBERT_PRECISION",
    )
    parser.add_argument(
        "--calibrate-from-db",
        action="store_true",
        help="int8: calibrate on up to 300 of your own contents from DATABASE_URL (default: the shipped sample)",
    )


def run_model_command(config: Settings, args: argparse.Namespace) -> int:
    """Build (or find cached) the configured conversion; print its folder and the seconds taken."""
    if args.calibrate_from_db and not (config.engine == "openvino" and config.precision == "int8"):
        print(
            "volfefe model: error: --calibrate-from-db applies to FINBERT_ENGINE=openvino with "
            f"FINBERT_PRECISION=int8 (configured: {config.engine}, {config.precision})",
            file=sys.stderr,
        )
        return 2
    if config.engine == "torch":
        print("FINBERT_ENGINE=torch runs the model as it is: nothing to build")
        return 0
    from model.engine_choice import locked_build

    calibration = None
    if args.calibrate_from_db:
        from db.existence import require_existing_database
        from model.calibration import database_texts

        require_existing_database(config.database_url)
        calibration = database_texts(config.database_url)
    for spec in config.models:  # each model of VOLFEFE_MODELS has its own conversion
        started = time.perf_counter()
        # Under the workers' lock; a failure recorded by a worker is tried again (cleared on success).
        result = locked_build(config.for_model(spec), calibration, retry_failed=True)
        seconds = time.perf_counter() - started
        used = result.record.get("calibration")
        calibrated = f", calibrated on {used['texts']} texts ({used['source']})" if used else ""
        which = f"model {spec.name}: " if len(config.models) > 1 else ""
        if result.converted:
            print(
                f"{which}built {config.engine} {config.precision} in {seconds:.1f}s{calibrated}: {result.folder}"
            )
        else:
            print(
                f"{which}already built {config.engine} {config.precision} (conversion took "
                f"{result.record['seconds']}s{calibrated}; checked in {seconds:.1f}s): {result.folder}"
            )
    return 0
