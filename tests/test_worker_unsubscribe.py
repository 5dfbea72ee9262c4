"""A stopping worker's pubsub thread: RQ 3.0 with redis-py 8 can wait a minute for it; ours does not."""

from __future__ import annotations

import threading
import time

import pytest
from redis import Redis
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from jobs import rq_seam
from tests.processes import wait_for


def subscribed_then_unsubscribed(redis_url: str) -> SimpleWorker:
    """A worker whose pubsub thread already read the UNSUBSCRIBE reply: the race a stop can lose."""
    worker = SimpleWorker(["q"], connection=Redis.from_url(redis_url), serializer=JSONSerializer)
    worker.subscribe()
    wait_for(lambda: worker.pubsub.subscribed, 5, interval=0.01, what="the subscription")
    worker.pubsub.unsubscribe()
    wait_for(lambda: not worker.pubsub.subscribed, 5, interval=0.01, what="the thread to read the reply")
    return worker


@pytest.mark.integration
def test_rq_own_unsubscribe_waits_out_its_sleep_after_that_race(redis_url: str) -> None:
    # Why the seam exists: when this fails, RQ or redis-py fixed it and unsubscribe_bounded can go.
    worker = subscribed_then_unsubscribed(redis_url)
    stopper = threading.Thread(target=SimpleWorker.unsubscribe, args=(worker,), daemon=True)
    stopper.start()
    stopper.join(timeout=3)
    assert stopper.is_alive()


@pytest.mark.integration
def test_unsubscribe_bounded_returns_within_its_wait_after_that_race(redis_url: str) -> None:
    worker = subscribed_then_unsubscribed(redis_url)
    started = time.monotonic()
    rq_seam.unsubscribe_bounded(worker)
    assert time.monotonic() - started < rq_seam.PUBSUB_STOP_WAIT + 1.0
    assert not worker.pubsub_thread._running.is_set()  # the thread ends when its wait does


@pytest.mark.integration
def test_unsubscribe_bounded_returns_at_once_from_a_listening_thread(redis_url: str) -> None:
    worker = SimpleWorker(["q"], connection=Redis.from_url(redis_url), serializer=JSONSerializer)
    worker.subscribe()
    wait_for(lambda: worker.pubsub.subscribed, 5, interval=0.01, what="the subscription")
    started = time.monotonic()
    rq_seam.unsubscribe_bounded(worker)
    assert time.monotonic() - started < rq_seam.PUBSUB_STOP_WAIT + 1.0
    assert not worker.pubsub_thread._running.is_set()
    assert worker.pubsub.connection is None  # released to the pool, whichever way the race went


@pytest.mark.integration
def test_rq_own_pubsub_handler_re_raises_a_stop(redis_url: str) -> None:
    # Why pubsub_thread_error exists: RQ's handler lets the thread die on StopRequested, traceback and all.
    worker = SimpleWorker(["q"], connection=Redis.from_url(redis_url), serializer=JSONSerializer)
    worker.subscribe()
    try:
        with pytest.raises(StopRequested):
            try:
                raise StopRequested()  # as the thread's loop calls it: inside its except clause
            except StopRequested as stop:
                worker._pubsub_exception_handler(stop, worker.pubsub, worker.pubsub_thread)
    finally:
        rq_seam.unsubscribe_bounded(worker)


@pytest.mark.integration
def test_a_stop_ends_the_pubsub_thread_quietly_and_other_errors_go_to_rq(redis_url: str) -> None:
    worker = SimpleWorker(["q"], connection=Redis.from_url(redis_url), serializer=JSONSerializer)
    worker.subscribe()
    thread = worker.pubsub_thread
    try:
        with pytest.raises(ValueError):  # RQ's handler: the thread exits on anything else
            try:
                raise ValueError("not a stop")
            except ValueError as error:
                rq_seam.pubsub_thread_error(worker, error, worker.pubsub, thread)
        assert thread._running.is_set()
        rq_seam.pubsub_thread_error(worker, StopRequested(), worker.pubsub, thread)
        assert not thread._running.is_set()  # its loop ends after its current wait, and closes the pubsub
    finally:
        rq_seam.unsubscribe_bounded(worker)
