"""Shared fixtures. Kafka and Redis come from ``tests.infra_fixtures`` (env, testcontainers, or
locally provisioned processes); ``tests.model_fixtures`` trains the demo models once per session
(outside the checkout); ``tests.stack_fixtures`` runs rtml's own processes on top."""

import os

from tests.paths import REPO_ROOT

# The checkout's developer config, as `make test` exports it, so that a bare `pytest` and the
# processes the tests start read the same file (local Kafka jars cached in .cache/, not re-fetched).
os.environ.setdefault("RTML_CONFIG", str(REPO_ROOT / "config" / "default.yaml"))

pytest_plugins = ["tests.infra_fixtures", "tests.model_fixtures", "tests.stack_fixtures"]
