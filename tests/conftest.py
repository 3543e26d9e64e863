"""Shared fixtures: a real redis-server and a moto HTTP server, each on a free port.

Both are reachable from subprocesses (CLIs, workers) through the environment they set:
FLEETKIT_REDIS_URL and AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from moto.server import ThreadedMotoServer

from tests.redis_server import RedisServer

REGION = "us-east-1"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the test session; yields its URL."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session's Redis, emptied for this test and exported as FLEETKIT_REDIS_URL."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    monkeypatch.setenv("FLEETKIT_REDIS_URL", redis_server)
    yield redis_server


@pytest.fixture(name="redis")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test's Redis (emptied for the test by `redis_url`)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto as a real HTTP endpoint, so subprocesses share the same fake cloud."""
    # Port 0: the server binds a free port itself (no gap between choosing it and binding it).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_VARIABLES}
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    os.environ.pop("AWS_PROFILE", None)
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
)


@pytest.fixture
def aws(moto_server: str) -> str:
    """The moto server, reset to an empty account for this test."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    return moto_server


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for a CLI subprocess: ours, with a wide terminal so tables do not wrap."""
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
