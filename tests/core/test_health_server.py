"""The health/metrics endpoint over real HTTP, fed by the worker's real Redis-backed providers."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetkit.core.health_server import HealthServer
from fleetkit.worker.health import HealthPolicy, WorkerHealth, instance_digest
from fleetkit.worker.metrics import WorkerMetrics, WorkerMetricsCollector

WORKERS = ["i-0abc.1", "i-0abc.2"]
POLICY = HealthPolicy(max_consecutive_failures=3)


def get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@pytest.fixture
def dead_redis() -> Iterator[Redis]:
    """A client for a port nobody listens on, failing at once instead of retrying."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    client = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    yield client
    client.close()


class Providers:
    """The supervisor's wiring, with a switchable client to simulate Redis going away."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def health(self) -> dict[str, Any]:
        return instance_digest(self.redis, WORKERS, POLICY)

    def registry(self) -> CollectorRegistry:
        # The collector asks for the client on each scrape, so the test can switch it.
        collector = WorkerMetricsCollector(self.redis, lambda: WORKERS, lambda: {"draining": 0})
        providers = self

        class Switchable:
            def collect(self) -> Iterable[Metric]:
                collector.redis = providers.redis
                return collector.collect()

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Switchable())
        return registry


@pytest.fixture
def providers(redis: Redis) -> Providers:
    for worker in WORKERS:
        WorkerHealth(redis, worker, POLICY).record_job(ok=True)
        metrics = WorkerMetrics(redis, worker)
        metrics.job_started(0.01)
        metrics.job_finished(0.2)
    return Providers(redis)


@pytest.fixture
def server(providers: Providers) -> Iterator[HealthServer]:
    with HealthServer("127.0.0.1", 0, providers.health, providers.registry()) as running:
        yield running


def test_port_zero_picks_a_free_port(server: HealthServer) -> None:
    assert server.port != 0
    assert get(server.port, "/healthz")[0] == 200


def test_healthy_instance_answers_200_with_digest(
    server: HealthServer, capfd: pytest.CaptureFixture[str]
) -> None:
    status, content_type, body = get(server.port, "/healthz?verbose=1")
    assert status == 200
    assert content_type == "application/json"
    digest = json.loads(body)
    assert digest["healthy"] is True
    assert [w["worker"] for w in digest["workers"]] == WORKERS
    # Polled every few seconds by load balancers: no access log line per request.
    assert capfd.readouterr().err == ""


def test_failing_worker_answers_503_with_same_digest(server: HealthServer, redis: Redis) -> None:
    for _ in range(POLICY.max_consecutive_failures):
        WorkerHealth(redis, WORKERS[1], POLICY).record_job(ok=False)
    status, content_type, body = get(server.port, "/healthz")
    assert status == 503
    assert content_type == "application/json"
    digest = json.loads(body)
    assert digest["healthy"] is False
    failing = [w for w in digest["workers"] if not w["healthy"]]
    assert [w["worker"] for w in failing] == [WORKERS[1]]
    assert "consecutive failures" in failing[0]["reasons"][0]


def test_metrics_are_prometheus_text(server: HealthServer) -> None:
    status, content_type, body = get(server.port, "/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    finished = families["fleetkit_jobs_finished"]
    assert sorted((s.labels["worker"], s.value) for s in finished.samples) == [
        (WORKERS[0], 1),
        (WORKERS[1], 1),
    ]
    assert families["fleetkit_draining"].samples[0].value == 0


@pytest.mark.parametrize("path", ["/", "/health", "/metrics/x"], ids=["root", "typo", "subpath"])
def test_unknown_path_is_404(server: HealthServer, path: str) -> None:
    assert get(server.port, path)[0] == 404


def test_redis_down_fails_requests_but_not_the_server(
    server: HealthServer, providers: Providers, dead_redis: Redis, redis: Redis
) -> None:
    providers.redis = dead_redis

    status, content_type, body = get(server.port, "/healthz")
    assert status == 503
    assert content_type == "application/json"
    answer = json.loads(body)
    assert answer["healthy"] is False
    assert len(answer["reasons"]) == 1
    assert answer["reasons"][0].startswith("ConnectionError")
    status, _, body = get(server.port, "/metrics")
    assert status == 500
    assert b"ConnectionError" in body

    providers.redis = redis
    assert get(server.port, "/healthz")[0] == 200
    assert get(server.port, "/metrics")[0] == 200


def test_stop_releases_the_port(providers: Providers) -> None:
    server = HealthServer("127.0.0.1", 0, providers.health, providers.registry())
    server.start()
    port = server.port
    assert get(port, "/healthz")[0] == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        get(port, "/healthz")


def test_metrics_speak_openmetrics_and_gzip_when_asked(server: HealthServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(
            "GET",
            "/metrics",
            headers={"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"},
        )
        response = conn.getresponse()
        body = gzip.decompress(response.read()).decode()
    finally:
        conn.close()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("application/openmetrics-text")
    assert response.getheader("Content-Encoding") == "gzip"
    assert body.endswith("# EOF\n")
    assert 'fleetkit_jobs_finished_total{worker="i-0abc.1"} 1.0' in body
