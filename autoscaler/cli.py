"""`autoscaler`: sizes the fleet from queue depth. Its commands arrive with the autoscaler issue;
until then the entry point exists so the console script installs and says so.
"""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="fleetkit")
def main() -> None:
    """fleetkit autoscaler (not built yet: `run`, `scale` and `release` come next)."""
