"""`fleet-worker`: the interruption-safe RQ worker. Its commands arrive with the worker issue;
until then the entry point exists so the console script installs and says so.
"""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="fleetkit")
def main() -> None:
    """fleetkit worker (not built yet: `run` comes next)."""
