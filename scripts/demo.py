"""`make demo`: deploy the `local` environment into an embedded moto server and show its status.

Everything goes through the real `infra` CLI in subprocesses, exactly as a user would type it;
only the cloud is fake (moto over HTTP, reached through AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(title: str, *args: str, env: dict[str, str]) -> None:
    print(f"\n$ {title}", flush=True)
    result = subprocess.run([sys.executable, "-m", "infra", *args], env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"demo failed: `{title}` exited {result.returncode}")


def main() -> None:
    # The fake cloud's request log would drown the CLI's own output.
    for noisy in ("werkzeug", "moto"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    print(f"fleetkit demo: fake AWS (moto) at {env['AWS_ENDPOINT_URL']}")
    try:
        run("infra deploy --env local --yes", "deploy", "--env", "local", "--yes", env=env)
        run("infra deploy --env local --yes  # again", "deploy", "--env", "local", "--yes", env=env)
        run("infra status --env local", "status", "--env", "local", env=env)
    finally:
        server.stop()
    print("\ndemo complete: stack deployed, redeploy was a no-op, status shown.")


if __name__ == "__main__":
    main()
