"""`make demo`: deploy the `local` environment into an embedded moto server, put a burst of jobs
on a private redis-server, and let the autoscaler size the fleet for it.

Everything goes through the real `infra` and `autoscaler` CLIs in subprocesses, exactly as a
user would type them; only the cloud is fake (moto over HTTP, reached through AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from moto.server import ThreadedMotoServer
from redis import Redis
from rq import Queue

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402


def run(title: str, *args: str, env: dict[str, str]) -> None:
    print(f"\n$ {title}", flush=True)
    program = {"infra": "from fleetkit.infra.cli import main; main()"}.get(
        title.split()[0], "from fleetkit.autoscaler.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", program, *args], env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"demo failed: `{title}` exited {result.returncode}")


def main() -> None:
    # The fake cloud's request log would drown the CLI's own output.
    for noisy in ("werkzeug", "moto"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # Port 0: the server binds a free port itself (no gap between choosing it and binding it).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="fleetkit-demo-"))).start()
    env["FLEETKIT_REDIS_URL"] = redis_server.url
    print(
        f"fleetkit demo: fake AWS (moto) at {env['AWS_ENDPOINT_URL']}, Redis at {redis_server.url}"
    )
    try:
        run("infra deploy --env local --yes", "deploy", "--env", "local", "--yes", env=env)
        run("infra deploy --env local --yes  # again", "deploy", "--env", "local", "--yes", env=env)
        run("infra status --env local", "status", "--env", "local", env=env)
        queue = Queue("default", connection=Redis.from_url(redis_server.url))
        for seconds in range(40):
            queue.enqueue("time.sleep", seconds % 5)
        print(f"\n# {len(queue)} jobs enqueued on 'default' with rq's own Queue.enqueue")
        run("autoscaler run --env local --once", "run", "--env", "local", "--once", env=env)
        run(
            "autoscaler scale workers 12 --env local --hold 10m",
            *("scale", "workers", "12", "--env", "local", "--hold", "10m"),
            env=env,
        )
        run("autoscaler status --env local", "status", "--env", "local", env=env)
    finally:
        redis_server.stop()
        server.stop()
    print(
        "\ndemo complete: stack deployed, redeploy was a no-op, the autoscaler sized the spot "
        "group for the burst in one tick, and a manual burst is held."
    )


if __name__ == "__main__":
    main()
