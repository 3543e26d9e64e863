"""Troposphere blueprints: one module per stack piece, composed by FleetBlueprint."""

from infra.blueprints.stack import FleetBlueprint

__all__ = ["FleetBlueprint"]
