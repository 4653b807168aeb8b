"""Shared fixtures. Kafka and Redis come from ``tests.infra_fixtures`` (env, testcontainers, or
locally provisioned processes); ``tests.stack_fixtures`` runs rtml's own processes on top."""

pytest_plugins = ["tests.infra_fixtures", "tests.stack_fixtures"]
