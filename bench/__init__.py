"""rtml benchmarks: the real stack (gateway, workers, Kafka, Redis) against a plain FastAPI baseline.

Run with ``.venv/bin/python -m bench.run`` (``make bench``); see :mod:`bench.run`.
"""
