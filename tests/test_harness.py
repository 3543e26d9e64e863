"""The fixtures themselves: a private real redis-server, a moto server subprocesses can reach."""

from __future__ import annotations

import os
import subprocess
import sys

import redis
import requests


def test_redis_is_a_private_real_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    info = client.info("server")
    assert info["tcp_port"] != 6379  # never the machine's shared instance
    assert "redis_version" in info
    client.set("fleetkit:test", "1")
    assert os.environ["FLEETKIT_REDIS_URL"] == redis_url


def test_subprocess_sees_the_same_fake_cloud(aws: str) -> None:
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="seen-by-child")
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import boto3; print(boto3.client('s3').list_buckets()['Buckets'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "seen-by-child" in child.stdout


def test_moto_serves_on_the_port_it_bound_itself(moto_server: str) -> None:
    port = int(moto_server.rsplit(":", 1)[1])
    assert port not in (0, 5000)  # bound by the server (port 0), not a fixed or guessed one
    assert requests.post(f"{moto_server}/moto-api/reset", timeout=10).ok
