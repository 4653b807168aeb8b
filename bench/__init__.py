"""rtml benchmarks: the real stack (gateway, workers, Kafka, Redis) against a plain FastAPI baseline.

Run with ``.venv/bin/python -m bench.run`` (``make bench``); see :mod:`bench.run`.
"""

import os

from bench.paths import REPO_ROOT

# The checkout's developer config, as the Makefile exports it, so that `python -m bench.<name>`
# run by hand uses the checkout's models/ and .rtml/ like `make bench` (and so do its children).
os.environ.setdefault("RTML_CONFIG", str(REPO_ROOT / "config" / "default.yaml"))
