"""Register the hourly sweep with rq-scheduler and run the scheduler.

python scheduler.py          register (idempotently) and run until stopped
python scheduler.py --once   run one sweep now and exit
"""

from __future__ import annotations

import argparse
import logging
import warnings

from redis import Redis

from cli.errors import run_command
from config import settings
from jobs.queue import QUEUE_NAME
from jobs.sweep import sweep
from services.redis_connection import connect, redis_url

# rq-scheduler's use of crontab warns on every start; nothing for our users to act on.
warnings.filterwarnings("ignore", category=FutureWarning, module="rq_scheduler")

SWEEP_JOB_ID = "hourly-sweep"
SWEEP_CRON = "0 * * * *"
SWEEP_FUNCTION = "jobs.sweep.scheduled_sweep"
#: seconds between the scheduler's checks for due jobs.
SCHEDULER_INTERVAL = 30


def register_sweep(connection: Redis):
    """Register the hourly sweep under a fixed id; an existing registration is replaced, never doubled."""
    from rq_scheduler import Scheduler

    scheduler = Scheduler(queue_name=QUEUE_NAME, connection=connection, interval=SCHEDULER_INTERVAL)
    scheduler.cancel(SWEEP_JOB_ID)  # the fixed id makes cancel + cron an idempotent update
    scheduler.cron(
        SWEEP_CRON, func=SWEEP_FUNCTION, id=SWEEP_JOB_ID, queue_name=QUEUE_NAME, use_local_timezone=False
    )
    return scheduler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduler.py", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="run one sweep now and exit")
    args = parser.parse_args(argv)
    config = settings()
    connection = connect(redis_url(config))
    if args.once:
        report = sweep(connection, config.database_url)
        print(f"sweep: {report.describe()}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scheduler = register_sweep(connection)
    logging.getLogger("scheduler").info(
        "hourly sweep registered as %r (%s); scheduler running", SWEEP_JOB_ID, SWEEP_CRON
    )
    scheduler.run()
    return 0


if __name__ == "__main__":
    run_command("scheduler.py", main)
