"""Where the checkout is: the benchmarks write bench/out and run the processes from it."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
