"""Dropping a model's cached predictions at once (``rtml cache invalidate``, the admin endpoint).

Keys are found with SCAN MATCH on the model's (or version's) key prefix and removed with UNLINK
in batches: SCAN never blocks Redis the way KEYS would, and UNLINK frees the memory in Redis's
background thread. The walk is O(keys in the database), which is fine for an operator's action
and keeps every read and write on the serving path a single-key (or MGET) operation.
"""

from __future__ import annotations

from redis import asyncio as aioredis

from runtime.cache_keys import invalidation_pattern

SCAN_BATCH = 1000


async def invalidate(client: aioredis.Redis, prefix: str, model: str, version: str | None = None) -> int:
    """Delete every cached prediction of ``model`` (or only of ``version``); returns how many."""
    pattern = invalidation_pattern(prefix, model, version)
    deleted, batch = 0, []
    async for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
        batch.append(key)
        if len(batch) >= SCAN_BATCH:
            deleted += int(await client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(await client.unlink(*batch))
    return deleted
