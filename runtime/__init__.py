"""The shared runtime of every rtml process: settings, the error tree, the Kafka layer, the model
registry, cache keys, feature validation, structured logs.

It imports only ``schemas`` (and reads ``config/*.yaml`` through settings); nothing here imports
``gateway``, ``workers``, ``drift``, ``importers`` or the ``rtml`` command (tests/unit/test_layering.py).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rtml")
except PackageNotFoundError:  # a checkout used without installing it
    __version__ = "0.0.0+unknown"
