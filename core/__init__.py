"""What the packages share: errors, the environment model, the Redis schema, tags and
lifecycle states, the recovery contract, the health/metrics server, the CLI error reporter.

`fleetkit.core` depends on no other fleetkit package; `infra`, `worker` and `autoscaler`
depend on it and never on each other (docs/architecture.md). Nothing is imported here: the
forking worker imports only the modules it uses (pydantic and botocore stay out of it).
"""
