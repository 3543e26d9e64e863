"""Shared by the AsgCapacityProvider tests: botocore clients answered by `Stubber`, offline."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.stub import Stubber

REGION = "us-east-1"
ENV = "dev"
NOW = 1_800_000_000.0
# One attempt inside botocore, so the provider's own backoff is what these tests observe.
NO_BOTOCORE_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1})


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, config=NO_BOTOCORE_RETRIES)
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"no retry expected here (asked to sleep {seconds}s)")
