"""``docker compose config`` accepts compose/docker-compose.yml, where the compose CLI plugin is
installed (the static checks of the file are unit tests: tests/unit/test_compose.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.paths import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "compose" / "docker-compose.yml"


def test_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed; tests/unit/test_compose.py validates the file")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        reason = (probe.stderr or probe.stdout).strip().splitlines()
        pytest.skip(
            f"`docker compose` unavailable ({reason[0] if reason else 'no output'}); "
            "tests/unit/test_compose.py validates the file"
        )
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
