"""Pytest plugin: the demo models, trained at most once per session into a temp dir.

No fixture writes into the checkout (its ``models/`` is what ``make models`` / ``rtml run``
manage), and no test depends on ``make models`` having run. Each demo model is trained the
first time a test asks for it: the unit tier only ever needs the two cheap ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runtime.registry import ModelRegistry


class DemoModels:
    """The session's registry of demo models. Tests only read it; a test that changes a registry
    works on a :meth:`copy`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def registry(self, *names: str) -> ModelRegistry:
        """The shared registry, holding at least ``names`` (every demo model when none are named)."""
        from importers.demo_models import train_demo_models

        registry = ModelRegistry(self.root)
        train_demo_models(registry, only=names or None)
        return registry

    def copy(self, destination: Path, *names: str) -> ModelRegistry:
        """A private registry at ``destination`` with ``names`` (every demo model when none)."""
        from importers.demo_models import DEMOS

        self.registry(*names)
        for name in names or DEMOS:
            shutil.copytree(self.root / name, destination / name)
        return ModelRegistry(destination)


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    """Demo models trained on demand, once per session, outside the checkout."""
    return DemoModels(tmp_path_factory.mktemp("demo-models"))
