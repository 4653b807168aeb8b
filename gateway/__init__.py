"""HTTP gateway: parse and validate, answer cache hits, publish to Kafka, await the correlated reply.

``app`` holds the thin FastAPI routes; ``service`` the one object they call;
``replies`` the reply consumer and pending futures; ``model_table`` what can be
served; ``cache`` the Redis read path; ``metrics`` the Prometheus series.
"""
