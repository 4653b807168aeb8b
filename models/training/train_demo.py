"""Train the demo models into the registry (version "1"; existing ones are kept).

    python models/training/train_demo.py [--root DIR] [--only NAME ...] [--force]

The code lives in :mod:`importers.demo_models`; this script only makes it runnable
from a checkout without installing rtml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from importers.demo_models import main

if __name__ == "__main__":
    raise SystemExit(main())
