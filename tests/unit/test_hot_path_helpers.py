"""The gateway hot path's helpers (issue 9): cheap ids and remembered metric series."""

from __future__ import annotations

import os
import re

from prometheus_client import CollectorRegistry, Counter

from runtime import ids
from runtime.metric_series import Series, remove_series


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    made = [ids.new_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)
    assert len(set(made)) == len(made)


def test_a_forked_child_draws_its_own_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave without running pytest's teardown
        os.write(write_end, ids.new_id().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    parent_id = ids.new_id()
    assert len(child_id) == 32
    assert child_id[:16] != parent_id[:16]  # another process prefix, not the parent's sequence


def test_series_remembers_children_until_told_to_forget() -> None:
    counter = Counter("series_test_total", "t", ["model", "version"], registry=CollectorRegistry())
    series = Series(counter)
    series.labels("m", "1").inc()
    series.labels("m", "1").inc()
    assert series.labels("m", "1") is counter.labels("m", "1")
    assert counter.labels("m", "1")._value.get() == 2
    remove_series(counter, ("model", "version"), model="m")
    series.forget()
    series.labels("m", "1").inc()  # a new child, exported again
    samples = [s for family in counter.collect() for s in family.samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in samples] == [({"model": "m", "version": "1"}, 1.0)]
