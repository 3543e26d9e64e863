"""`ImdsTerminationNoticeSource` against a real `LocalImdsServer`, and the server itself."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from fleetkit.core.imds import LIFECYCLE_PATH, REBALANCE_PATH, SPOT_PATH
from fleetkit.sandbox.imds import LocalImdsServer
from fleetkit.worker.errors import WorkerConfigError
from fleetkit.worker.imds import DEFAULT_ENDPOINT, ENDPOINT_ENV, ImdsTerminationNoticeSource
from fleetkit.worker.notices import NoticeKind, TerminationNoticeSource

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

MakeSource = Callable[..., ImdsTerminationNoticeSource]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def imds() -> Iterator[LocalImdsServer]:
    with LocalImdsServer() as server:
        yield server


@pytest.fixture
def make_source() -> Iterator[MakeSource]:
    """Sources built here are closed after the test."""
    sources: list[ImdsTerminationNoticeSource] = []

    def make(*args: object, **kwargs: object) -> ImdsTerminationNoticeSource:
        source = ImdsTerminationNoticeSource(*args, **kwargs)  # type: ignore[arg-type]
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


@pytest.fixture
def source(imds: LocalImdsServer, make_source: MakeSource) -> ImdsTerminationNoticeSource:
    return make_source(imds.url)


@pytest.fixture
def warnings_of(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.DEBUG, logger="fleetkit.worker.imds")
    return lambda: [
        r.getMessage()
        for r in caplog.records
        if r.name == "fleetkit.worker.imds" and r.levelno >= logging.WARNING
    ]


# --- token flow ---------------------------------------------------------------------------


def test_token_is_fetched_once_and_sent_on_every_get(
    imds: LocalImdsServer, source: ImdsTerminationNoticeSource
) -> None:
    assert source.poll() is None
    assert source.poll() is None
    assert source.instance_id() == "i-0123456789abcdef0"
    assert imds.token_requests == 1
    # Each GET was authorised: the server answers 401 to a GET without a valid token.
    assert imds.request_count(SPOT_PATH) == 2
    assert imds.request_count(LIFECYCLE_PATH) == 2
    assert imds.request_count(REBALANCE_PATH) == 2


def test_token_is_refreshed_before_it_expires(
    imds: LocalImdsServer, make_source: MakeSource
) -> None:
    source = make_source(imds.url, token_ttl_s=1)
    source.poll()
    time.sleep(0.85)  # past 80 % of the ttl
    imds.set_lifecycle_state("Terminated")
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.ASG_TERMINATION
    assert imds.token_requests == 2
    assert imds.request_count(SPOT_PATH) == 2  # no 401 retries: the new token came first


def test_token_is_refetched_on_401(
    imds: LocalImdsServer,
    source: ImdsTerminationNoticeSource,
    warnings_of: Callable[[], list[str]],
) -> None:
    source.poll()
    imds.revoke_tokens()  # as after an IMDS restart
    imds.set_spot_interruption(at=AT)
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.SPOT_INTERRUPTION
    assert imds.token_requests == 2
    assert imds.request_count(SPOT_PATH) == 3  # the 401, then the retry
    assert warnings_of() == []


def test_persistent_401_is_logged_and_skips_that_path(
    imds: LocalImdsServer,
    source: ImdsTerminationNoticeSource,
    warnings_of: Callable[[], list[str]],
) -> None:
    source.probe()
    imds.set_spot_interruption(at=AT)
    imds.set_lifecycle_state("Terminated")
    imds.fail_next("spot/instance-action", 401, count=2)
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.ASG_TERMINATION
    assert len(warnings_of()) == 1 and "401" in warnings_of()[0]
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.SPOT_INTERRUPTION


# --- notices ------------------------------------------------------------------------------


def test_no_notice(source: ImdsTerminationNoticeSource) -> None:
    assert isinstance(source, TerminationNoticeSource)
    assert source.poll() is None
    assert source.enabled


@pytest.mark.parametrize("action", ["terminate", "stop", "hibernate"])
def test_spot_interruption(imds: LocalImdsServer, make_source: MakeSource, action: str) -> None:
    seen = datetime(2026, 11, 22, 9, 58, 1, tzinfo=UTC)
    source = make_source(imds.url, clock=lambda: seen)
    imds.set_spot_interruption(action, at=AT)
    notice = source.poll()
    assert notice is not None
    assert (notice.kind, notice.deadline, notice.action, notice.seen_at) == (
        NoticeKind.SPOT_INTERRUPTION,
        AT,
        action,
        seen,
    )
    assert notice.imminent


def test_default_spot_deadline_is_two_minutes_away(
    imds: LocalImdsServer, source: ImdsTerminationNoticeSource
) -> None:
    imds.set_spot_interruption()
    notice = source.poll()
    assert notice is not None and notice.deadline is not None
    remaining = (notice.deadline - datetime.now(UTC)).total_seconds()
    assert 115 <= remaining <= 121


def test_lifecycle_terminated(imds: LocalImdsServer, source: ImdsTerminationNoticeSource) -> None:
    imds.set_lifecycle_state("Terminated")
    notice = source.poll()
    assert notice is not None
    assert (notice.kind, notice.deadline, notice.action) == (
        NoticeKind.ASG_TERMINATION,
        None,
        "Terminated",
    )
    assert notice.imminent


@pytest.mark.parametrize("state", ["InService", "Standby", "Detached", "Warmed:Running"])
def test_other_lifecycle_states_are_no_notice(
    imds: LocalImdsServer, source: ImdsTerminationNoticeSource, state: str
) -> None:
    imds.set_lifecycle_state(state)
    assert source.poll() is None


def test_rebalance_is_not_imminent(
    imds: LocalImdsServer, source: ImdsTerminationNoticeSource
) -> None:
    imds.set_rebalance()
    notice = source.poll()
    assert notice is not None
    assert (notice.kind, notice.deadline, notice.imminent) == (NoticeKind.REBALANCE, None, False)


def test_spot_wins_over_rebalance_and_lifecycle(
    imds: LocalImdsServer, source: ImdsTerminationNoticeSource
) -> None:
    imds.set_rebalance()
    imds.set_lifecycle_state("Terminated")
    imds.set_spot_interruption(at=AT)
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.SPOT_INTERRUPTION
    imds.clear()
    assert source.poll() is None


# --- faults -------------------------------------------------------------------------------


def _fail_500(imds: LocalImdsServer) -> None:
    imds.fail_next("spot/instance-action", 500, count=10)


def _malformed(imds: LocalImdsServer) -> None:
    imds.malformed("spot/instance-action", '{"action": "terminate", "time": ')


def _slow(imds: LocalImdsServer) -> None:
    imds.delay(0.5)


@pytest.mark.parametrize(
    ("inject", "logged"),
    [(_fail_500, "HTTP 500"), (_malformed, "malformed"), (_slow, "timed out")],
    ids=["http-500", "malformed-json", "timeout"],
)
def test_faults_are_logged_once_and_the_source_recovers(
    imds: LocalImdsServer,
    make_source: MakeSource,
    warnings_of: Callable[[], list[str]],
    inject: Callable[[LocalImdsServer], None],
    logged: str,
) -> None:
    source = make_source(imds.url, timeout_s=0.2)
    assert source.probe()
    inject(imds)
    for _ in range(2):
        started = time.monotonic()
        assert source.poll() is None
        assert time.monotonic() - started < 1.0
    # Two failed polls, one warning: a broken IMDS must not flood the log.
    assert len(warnings_of()) == 1
    assert SPOT_PATH in warnings_of()[0] and logged in warnings_of()[0]
    imds.clear_faults()
    imds.set_spot_interruption(at=AT)
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.SPOT_INTERRUPTION
    assert source.enabled


def test_unreachable_endpoint_disables_the_source(
    make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetkit.worker.imds")
    port = free_port()  # closed again: connection refused
    source = make_source(f"http://127.0.0.1:{port}")
    assert source.enabled  # until probed
    assert source.probe() is False
    assert source.enabled is False
    started = time.monotonic()
    assert source.poll() is None
    assert source.instance_id() is None
    assert source.region() is None
    assert time.monotonic() - started < 0.1
    records = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "fleetkit.worker.imds"
    ]
    assert records == [
        (
            logging.INFO,
            f"no instance metadata service at http://127.0.0.1:{port}: "
            "termination notices disabled",
        )
    ]
    # Disabled means no network calls at all, even once something listens there.
    with LocalImdsServer(port=port) as late:
        assert source.poll() is None
        assert late.request_counts() == {}
        assert source.probe() is True  # an explicit probe looks again
        assert source.enabled
        assert source.instance_id() == "i-0123456789abcdef0"


@pytest.mark.parametrize("status", [400, 403, 404, 405, 501])
def test_an_endpoint_that_gives_no_token_disables_the_source_in_one_line(
    imds: LocalImdsServer, make_source: MakeSource, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # Another cloud's metadata service, or any web server, where AWS's IMDS should be.
    caplog.set_level(logging.DEBUG, logger="fleetkit.worker.imds")
    imds.fail_next("/latest/api/token", status, count=3)
    source = make_source(imds.url)
    assert source.probe() is False
    for _ in range(3):
        assert source.poll() is None
    assert imds.token_requests == 3  # the probe's attempts, and nothing after them
    assert imds.request_counts().keys() == {"/latest/api/token"}
    lines = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "fleetkit.worker.imds" and r.levelno >= logging.INFO
    ]
    assert lines == [
        (
            logging.INFO,
            f"no instance metadata service at {imds.url} (token request answered HTTP "
            f"{status}): termination notices disabled",
        )
    ]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_unhappy_imds_is_tried_again(
    imds: LocalImdsServer,
    make_source: MakeSource,
    warnings_of: Callable[[], list[str]],
    status: int,
) -> None:
    imds.fail_next("/latest/api/token", status, count=1)
    source = make_source(imds.url)
    assert source.probe() is True  # throttled or failing for now: IMDS is there
    assert warnings_of() == [
        f"instance metadata token request failed: token request answered HTTP {status}"
    ]
    imds.set_spot_interruption(at=AT)
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.SPOT_INTERRUPTION


def test_poll_on_a_never_probed_unreachable_source(make_source: MakeSource) -> None:
    source = make_source(f"http://127.0.0.1:{free_port()}")
    assert source.poll() is None
    assert source.enabled is False


def test_instance_id_and_region(make_source: MakeSource) -> None:
    with LocalImdsServer(instance_id="i-0fedcba9876543210", region="eu-west-1") as server:
        source = make_source(server.url)
        assert source.instance_id() == "i-0fedcba9876543210"
        assert source.region() == "eu-west-1"
        server.fail_next("placement/region", 503, count=2)
        assert source.region() is None


# --- endpoint resolution ------------------------------------------------------------------


def test_endpoint_from_environment(
    imds: LocalImdsServer, make_source: MakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, imds.url + "/")
    source = make_source()
    assert source.endpoint == imds.url
    assert source.instance_id() == "i-0123456789abcdef0"
    assert imds.token_requests == 1


def test_endpoint_argument_beats_environment(
    make_source: MakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")
    assert make_source("http://127.0.0.1:8111/").endpoint == "http://127.0.0.1:8111"


def test_default_endpoint(make_source: MakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    assert make_source().endpoint == DEFAULT_ENDPOINT == "http://169.254.169.254"


@pytest.mark.parametrize(
    ("endpoint", "kwargs"),
    [("169.254.169.254", {}), ("http://127.0.0.1:1", {"token_ttl_s": 0})],
    ids=["no-scheme", "ttl-out-of-range"],
)
def test_bad_settings_are_config_errors(endpoint: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(WorkerConfigError):
        ImdsTerminationNoticeSource(endpoint, **kwargs)  # type: ignore[arg-type]


# --- the server as AWS documents it -------------------------------------------------------


def _token(client: httpx.Client, ttl: str = "60") -> str:
    response = client.put(
        "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    )
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"X-aws-ec2-metadata-token-ttl-seconds": "0"}, 400),
        ({"X-aws-ec2-metadata-token-ttl-seconds": "21601"}, 400),
        ({"X-aws-ec2-metadata-token-ttl-seconds": "soon"}, 400),
        ({"X-aws-ec2-metadata-token-ttl-seconds": "21600", "X-Forwarded-For": "10.0.0.1"}, 403),
        ({"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, 200),
    ],
    ids=["no-ttl", "ttl-zero", "ttl-too-long", "ttl-junk", "proxied", "ok"],
)
def test_server_token_request(imds: LocalImdsServer, headers: dict[str, str], status: int) -> None:
    with httpx.Client(base_url=imds.url) as client:
        assert client.put("/latest/api/token", headers=headers).status_code == status


def test_server_requires_a_valid_unexpired_token(imds: LocalImdsServer) -> None:
    with httpx.Client(base_url=imds.url) as client:
        path = "/latest/meta-data/instance-id"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-aws-ec2-metadata-token": "forged"}).status_code == 401
        token = _token(client, ttl="1")
        assert client.get(path, headers={"X-aws-ec2-metadata-token": token}).text == (
            "i-0123456789abcdef0"
        )
        time.sleep(1.05)
        assert client.get(path, headers={"X-aws-ec2-metadata-token": token}).status_code == 401


def test_server_serves_aws_bodies(imds: LocalImdsServer) -> None:
    with httpx.Client(base_url=imds.url) as client:
        client.headers["X-aws-ec2-metadata-token"] = _token(client)
        meta = "/latest/meta-data"
        assert client.get(f"{meta}/spot/instance-action").status_code == 404
        assert client.get(f"{meta}/spot/termination-time").status_code == 404
        assert client.get(f"{meta}/events/recommendations/rebalance").status_code == 404
        assert client.get(f"{meta}/autoscaling/target-lifecycle-state").text == "InService"
        assert client.get(f"{meta}/no/such/thing").status_code == 404
        imds.set_spot_interruption("terminate", AT)
        imds.set_rebalance(AT - timedelta(minutes=5))
        assert client.get(f"{meta}/spot/instance-action").text == (
            '{"action": "terminate", "time": "2026-11-22T10:00:00Z"}'
        )
        assert client.get(f"{meta}/spot/termination-time").text == "2026-11-22T10:00:00Z"
        assert client.get(f"{meta}/events/recommendations/rebalance").json() == {
            "noticeTime": "2026-11-22T09:55:00Z"
        }
        document = client.get("/latest/dynamic/instance-identity/document").json()
        assert {k: document[k] for k in ("instanceId", "region", "availabilityZone")} == {
            "instanceId": "i-0123456789abcdef0",
            "region": "us-east-1",
            "availabilityZone": "us-east-1a",
        }
        assert document["instanceType"]


def test_server_without_token_requirement() -> None:
    with LocalImdsServer(require_token=False) as server, httpx.Client() as client:
        assert client.get(f"{server.url}/latest/meta-data/placement/region").text == "us-east-1"


def test_control_api(imds: LocalImdsServer, source: ImdsTerminationNoticeSource) -> None:
    with httpx.Client(base_url=imds.url) as control:
        assert control.post("/fleetkit/notice/rebalance").status_code == 200
        notice = source.poll()
        assert notice is not None and notice.kind is NoticeKind.REBALANCE
        response = control.post("/fleetkit/notice/spot", json={"action": "stop", "in_seconds": 30})
        assert response.json() == {"ok": True}
        notice = source.poll()
        assert notice is not None and notice.deadline is not None
        assert (notice.kind, notice.action) == (NoticeKind.SPOT_INTERRUPTION, "stop")
        assert 25 <= (notice.deadline - datetime.now(UTC)).total_seconds() <= 31
        assert control.post("/fleetkit/clear").status_code == 200
        assert control.post("/fleetkit/lifecycle/Terminated").status_code == 200
        notice = source.poll()
        assert notice is not None and notice.kind is NoticeKind.ASG_TERMINATION
        assert control.post("/fleetkit/clear").status_code == 200
        assert source.poll() is None
        assert control.get("/fleetkit/requests").json()[SPOT_PATH] == 4
        assert control.post("/fleetkit/notice/spot", content=b"[1]").status_code == 400
        assert control.post("/fleetkit/notice/spot", content=b"{").status_code == 400
        assert control.post("/fleetkit/notice/meteor").status_code == 404
        too_far = control.post("/fleetkit/notice/spot", json={"in_seconds": 1e308})
        assert too_far.status_code == 400
        assert control.post("/fleetkit/lifecycle/Warmed%3ARunning").status_code == 200
        assert source.poll() is None


def test_server_cli_runs_until_terminated(make_source: MakeSource) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetkit.sandbox.imds",
            "--port",
            str(port),
            "--instance-id",
            "i-1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        source = make_source(url, probe_attempts=1)
        deadline = time.monotonic() + 10
        while not source.probe():
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        assert source.instance_id() == "i-1"
        httpx.post(f"{url}/fleetkit/notice/spot", json={"in_seconds": 60}, trust_env=False)
        notice = source.poll()
        assert notice is not None and notice.kind is NoticeKind.SPOT_INTERRUPTION
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert f"serving at {url}" in output
