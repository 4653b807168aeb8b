"""rtml: real-time ML model serving over Kafka.

Processes: ``gateway`` (FastAPI, HTTP -> Kafka -> correlated reply), ``workers``
(Kafka -> Redis cache -> ONNX Runtime micro-batches -> replies + prediction log)
and the infrastructure helpers in :mod:`rtml.infra`. Shared pieces live here:
settings, the error tree (:mod:`runtime.errors`), Kafka client wrappers, cache keys
and the model registry.
"""

__version__ = "0.1.0"
