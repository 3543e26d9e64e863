"""A private redis-server process on a free port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """`redis-server` with its own data directory; `restart()` keeps port and data."""

    def __init__(
        self,
        data: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        """`password`: `requirepass` (the URL carries it); `extra`: more server arguments."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make install`")
        self.data = data
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--logfile",
            str(data / "redis.log"),
            *(
                ("--appendonly", "yes", "--appendfsync", "always")
                if appendonly
                else ("--appendonly", "no")
            ),
            *(("--requirepass", password) if password else ()),
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> RedisServer:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.stop()
                        log = self.data / "redis.log"
                        raise RuntimeError(
                            f"redis-server did not start: {log.read_text() if log.exists() else ''}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
