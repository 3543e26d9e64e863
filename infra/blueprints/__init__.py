"""Troposphere blueprints: one module per stack piece, composed by FleetBlueprint."""

from fleetkit.infra.blueprints.stack import FleetBlueprint

__all__ = ["FleetBlueprint"]
