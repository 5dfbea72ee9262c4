"""Register the hourly sweep with rq-scheduler and run the scheduler.

python scheduler.py          keep the hourly sweep registered and move it onto the queue each hour,
                             until SIGTERM or Ctrl-C; rides out Redis outages of any length
python scheduler.py --once   run one sweep now and exit

Every pass (each --interval seconds) re-asserts the hourly sweep's registration (fixed id
"hourly-sweep": never two) and, when Redis is found without the scheduler's marker key (a new Redis,
or one restarted without persistence or emptied), enqueues one sweep at once
("sweep-after-redis-loss"). Jobs are JSON; the scheduler moves no job but the sweep.
"""

from __future__ import annotations

import argparse
import logging
import signal
import warnings
from types import FrameType

from redis import Redis

from cli.errors import EXIT_FAILURE, run_command
from config import settings
from jobs.json_scheduler import JsonScheduler
from jobs.schedule import (
    SWEEP_CRON,
    SWEEP_FUNCTION,
    SWEEP_JOB_ID,
    ensure_sweep_registered,
    keep_schedule,
    sweep_scheduler,
)
from jobs.scheduler_loop import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_REMINDER,
    SchedulerLoop,
    scheduler_connection,
)
from jobs.sweep import hourly_sweep
from services.redis_connection import connect_for_jobs, redis_url, safe_url

# rq-scheduler's use of crontab warns on every start; nothing for our users to act on.
warnings.filterwarnings("ignore", category=FutureWarning, module="rq_scheduler")

__all__ = ["SWEEP_CRON", "SWEEP_FUNCTION", "SWEEP_JOB_ID", "main", "register_sweep"]

log = logging.getLogger("scheduler")


def register_sweep(connection: Redis, queue_name: str | None = None) -> JsonScheduler:
    """Register the hourly sweep unless its registration is current (never two); return the scheduler.

    ``queue_name`` defaults to the configured queue (``VOLFEFE_QUEUE``).
    """
    scheduler = sweep_scheduler(connection, queue_name or settings().queue_name, DEFAULT_INTERVAL)
    ensure_sweep_registered(scheduler)
    return scheduler


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="run one sweep now and exit")
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="seconds between passes: due jobs moved, registration and marker checked (default %(default)g)",
    )
    parser.add_argument(
        "--max-backoff",
        type=_seconds,
        default=DEFAULT_MAX_BACKOFF,
        metavar="SECONDS",
        help="longest wait between attempts while Redis is unreachable (default %(default)g)",
    )
    parser.add_argument(
        "--reminder",
        type=_seconds,
        default=DEFAULT_REMINDER,
        metavar="SECONDS",
        help="while Redis is unreachable, log a reminder this often (default %(default)g)",
    )
    return parser


def _stop_on_signals(loop: SchedulerLoop) -> None:
    """SIGTERM or SIGINT: stop after the pass under way; a second one: stop now."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if loop.stopping:
            raise SystemExit(128 + signum)
        log.info("%s received: stopping", signal.Signals(signum).name)
        loop.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = settings()
    if args.once:
        report, backfill = hourly_sweep(connect_for_jobs(redis_url(config)), config)
        print(
            f"sweep: {report.describe()}"
            + (f" ({backfill} of them backfill for a model added later)" if backfill else "")
        )
        return 0 if report.stopped is None else EXIT_FAILURE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url = redis_url(config)
    scheduler = sweep_scheduler(scheduler_connection(url), config.queue_name, args.interval)
    loop = SchedulerLoop(
        scheduler,
        keep_schedule,
        safe_url(url),
        interval=args.interval,
        max_backoff=args.max_backoff,
        reminder=args.reminder,
    )
    _stop_on_signals(loop)
    loop.run()
    return 0


if __name__ == "__main__":
    run_command("scheduler.py", main)
