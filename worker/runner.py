"""Wires the supervisor to its edges: IMDS notices, the health endpoint, the lifecycle action."""

from __future__ import annotations

import logging
from typing import Any

import boto3

from fleetkit.core.aws import RETRY_CONFIG
from fleetkit.core.cli import stderr
from fleetkit.core.health_server import HealthServer
from fleetkit.worker.health import instance_digest
from fleetkit.worker.imds import ImdsTerminationNoticeSource
from fleetkit.worker.lifecycle import complete_termination
from fleetkit.worker.metrics import WorkerMetrics, WorkerMetricsCollector
from fleetkit.worker.notices import TerminationNotice
from fleetkit.worker.settings import WorkerSettings
from fleetkit.worker.supervisor import Supervisor

__all__ = ["run_supervisor"]

log = logging.getLogger(__name__)


def run_supervisor(settings: WorkerSettings) -> int:
    notices = ImdsTerminationNoticeSource(settings.imds_endpoint)
    on_ec2 = notices.probe()
    instance_id = notices.instance_id() if on_ec2 else None

    def terminated(notice: TerminationNotice | None) -> None:
        if instance_id is None:
            return
        region = notices.region()
        client = boto3.client("autoscaling", region_name=region, config=RETRY_CONFIG)
        complete_termination(client, instance_id)

    supervisor = Supervisor(
        settings,
        notices if on_ec2 else None,
        on_terminated=terminated,
        host=instance_id,
        console=stderr,
    )
    probe = supervisor.probe  # answers fast when Redis is down instead of retrying for seconds

    def names() -> list[str]:
        return sorted(w.name for w in supervisor.workers.values())

    def health() -> dict[str, Any]:
        digest = instance_digest(probe, names())
        digest["draining"] = supervisor.draining
        return digest

    def gauges() -> dict[str, float]:
        return {"draining": float(supervisor.draining), "workers": float(len(names()))}

    def count_notice(notice: TerminationNotice) -> None:
        for name in names():
            WorkerMetrics(probe, name).notice_seen(notice.kind.value)

    supervisor.notice_hooks.append(count_notice)
    server = None
    if settings.metrics_port is not None:
        registry = WorkerMetricsCollector(probe, names, gauges).registry()
        server = HealthServer(settings.metrics_host, settings.metrics_port, health, registry)
        server.start()
        log.info("health and metrics on port %d", server.port)
    try:
        return supervisor.run()
    finally:
        if server is not None:
            server.stop()
        notices.close()
