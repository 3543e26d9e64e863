"""A worker process's record of Redis outages, and its filter on rq's logger (no I/O)."""

from __future__ import annotations

import logging

import pytest
from redis import exceptions

from fleetkit.core.redis_io import where
from fleetkit.worker.outage import RQ_LOGGER, RedisOutage


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://10.0.0.5:6379/0", "10.0.0.5:6379/0"),
        ("redis://:s3cret@cache.internal:6380/2", "cache.internal:6380/2"),
        ("rediss://user:s3cret@cache.internal", "cache.internal:6379/0"),
        ("unix:///run/redis.sock", "/run/redis.sock"),
    ],
)
def test_where_shows_no_credentials(url: str, shown: str) -> None:
    assert where(url) == shown


def test_rq_redis_complaints_become_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    outage = RedisOutage("w1")
    rq_log = logging.getLogger(RQ_LOGGER)
    rq_log.addFilter(outage)
    refused = exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    try:
        with caplog.at_level(logging.DEBUG):
            for seconds in (1, 2, 4):
                rq_log.error(
                    "Worker %s: could not connect to Redis instance: %s retrying in %d seconds...",
                    "w1",
                    refused,
                    seconds,
                )
            try:
                raise refused
            except exceptions.ConnectionError:
                rq_log.error(
                    "Worker %s: found an unhandled exception, quitting...", "w1", exc_info=True
                )
            rq_log.error("Worker %s: Redis connection timeout, quitting...", "w1")
            # A refused command is no outage: rq's record of it stays.
            refusal = exceptions.ResponseError("NOPERM")
            rq_log.warning("Worker %s: pubsub thread exiting on %s", "w1", refusal)
            rq_log.info("Worker %s: default: Job OK (%s)", "w1", "j2")
            assert outage.down
            outage.recovered()
            outage.recovered()
    finally:
        rq_log.removeFilter(outage)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "fleetkit.worker.outage",
            logging.DEBUG,
            "worker w1: Redis unreachable, retrying until it answers: cannot be reached "
            "(ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused.)",
        ),
        ("rq.worker", logging.WARNING, "Worker w1: pubsub thread exiting on NOPERM"),
        ("rq.worker", logging.INFO, "Worker w1: default: Job OK (j2)"),
        ("fleetkit.worker.outage", logging.DEBUG, "worker w1: Redis reachable again after 0 s"),
    ]
