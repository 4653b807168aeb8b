"""Where the checkout is, for tests that read its files (README examples, compose, schemas)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
