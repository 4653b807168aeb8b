"""Kafka workers: poll a model's request topic, serve micro-batches with ONNX
Runtime behind the Redis cache, reply, and append to the prediction log.

One module per stage: ``consume`` (Kafka in, offsets), ``codec`` (decode and
validate, encode out), ``cache`` (Redis), ``runtime`` (ONNX), ``outbox``
(durable producer for the log and dead letters), ``reply`` (replies to
gateways), ``pipeline`` (one batch through the stages) and ``loop`` (the run
loop and process lifecycle).
"""
