"""fleetkit."""
