"""Which reply topics have outlived their gateway (gateway/reply_orphans.py), and the janitor's
pass over them (gateway/reply_janitor.py) with the broker replaced by an in-memory one. The same
on a real broker with real gateways: tests/integration/test_reply_topic_gc.py."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from confluent_kafka import KafkaError, KafkaException

from gateway import reply_janitor
from gateway.reply_janitor import ReplyTopicJanitor
from gateway.reply_orphans import (
    OrphanPolicy,
    Sighting,
    Watch,
    candidates,
    encode_heartbeat,
    heartbeat_at_ms,
    judge,
)
from runtime.clock import now_ms
from runtime.errors import SettingsError
from runtime.settings import GatewaySettings, KafkaSettings, load_settings

PREFIX = "rtml.replies."
POLICY = OrphanPolicy(orphan_after_s=60.0)  # heartbeat every 10 s, confirmed over 30 s
T0_MS = 1_800_000_000_000


def beat(at_s: float, instance: str = "gw") -> str:
    return encode_heartbeat(instance, T0_MS + int(at_s * 1000))


def watch() -> Watch:
    return Watch(POLICY, max_gap_s=60.0)


def test_policy_derives_heartbeat_and_confirmation_from_the_orphan_bound() -> None:
    assert (POLICY.heartbeat_s, POLICY.confirm_s) == (10.0, 30.0)
    assert OrphanPolicy(300.0).heartbeat_s == 10.0  # never further apart than 10 s
    assert (OrphanPolicy(6.0).heartbeat_s, OrphanPolicy(6.0).confirm_s) == (1.0, 3.0)


def test_only_other_topics_under_the_prefix_are_candidates() -> None:
    topics = [
        "rtml.replies.gw-1",
        "rtml.replies.gw-2",
        "rtml.replies.",  # the bare prefix names no gateway
        "rtml.requests.iris",
        "staging.replies.gw-1",  # another stack's namespace
        "__consumer_offsets",
        "rtml.replie.gw-3",
    ]
    assert candidates(topics, PREFIX, own=["rtml.replies.gw-2"]) == ["rtml.replies.gw-1"]


def test_heartbeat_records_round_trip_and_garbage_reads_as_none() -> None:
    assert heartbeat_at_ms(encode_heartbeat("gw-1", 1234)) == 1234
    for garbage in (None, "", "not json", "[]", '{"at_ms": "soon"}', '{"at_ms": true}', "{}"):
        assert heartbeat_at_ms(garbage) is None


def test_a_live_gateway_is_never_judged_gone_however_long_it_is_watched() -> None:
    seen = watch()
    for second in range(0, 3600, 10):  # a pass every 10 s for an hour; a beat every 10 s
        seen.update({"rtml.replies.live": beat(second)}, now=float(second))
        assert seen.orphans(float(second), T0_MS + second * 1000 + 500) == []


def test_a_live_gateway_with_a_skewed_clock_is_not_judged_gone() -> None:
    seen = watch()
    behind_ms = 3_600_000  # its clock is an hour behind: every heartbeat looks an hour old
    for second in range(0, 600, 10):
        seen.update({"rtml.replies.skewed": beat(second - behind_ms / 1000)}, now=float(second))
        assert seen.orphans(float(second), T0_MS + second * 1000) == []


def test_a_slow_starting_gateway_without_a_heartbeat_yet_is_kept_for_the_whole_bound() -> None:
    seen = watch()
    for second in range(0, 60, 10):
        seen.update({"rtml.replies.starting": None}, now=float(second))
        assert seen.orphans(float(second), T0_MS) == [], second
    # It starts beating at 50 s: the watch starts again from what it now shows.
    seen.update({"rtml.replies.starting": beat(50)}, now=60.0)
    assert seen.orphans(60.0, T0_MS + 60_000) == []


def test_a_topic_that_never_had_a_heartbeat_goes_after_the_bound_of_watching() -> None:
    seen = watch()
    for second in range(0, 61, 10):
        seen.update({"rtml.replies.legacy": None}, now=float(second))
    verdict = seen.verdicts(60.0, T0_MS)[0]
    assert verdict.orphan and "no heartbeat record for 60 s" in verdict.reason


def test_a_dead_gateway_goes_once_its_old_heartbeat_stayed_unchanged_for_the_confirmation() -> None:
    seen = watch()
    last = beat(0)  # beat at t=0, then killed
    now_ms = T0_MS + 100_000  # 100 s old by the wall clock when a fresh observer first looks
    seen.update({"rtml.replies.dead": last}, now=0.0)
    assert seen.orphans(0.0, now_ms) == []  # not yet confirmed: a live one would beat meanwhile
    seen.update({"rtml.replies.dead": last}, now=20.0)
    assert seen.orphans(20.0, now_ms + 20_000) == []
    seen.update({"rtml.replies.dead": last}, now=30.0)
    assert seen.orphans(30.0, now_ms + 30_000) == ["rtml.replies.dead"]


def test_a_dead_gateway_watched_since_its_last_beat_goes_after_the_bound() -> None:
    seen = watch()
    for second in range(0, 60, 10):
        seen.update({"rtml.replies.dead": beat(0)}, now=float(second))
        assert seen.orphans(float(second), T0_MS + second * 1000) == []
    seen.update({"rtml.replies.dead": beat(0)}, now=60.0)
    assert seen.orphans(60.0, T0_MS + 60_000) == ["rtml.replies.dead"]


def test_after_a_broker_outage_only_the_gateway_that_does_not_beat_again_goes() -> None:
    seen = watch()
    seen.update({"rtml.replies.a": beat(0, "a"), "rtml.replies.b": beat(0, "b")}, now=0.0)
    seen.forget()  # passes failed during a 10-minute outage; every heartbeat is now 600 s old
    after = 600.0
    seen.update({"rtml.replies.a": beat(0, "a"), "rtml.replies.b": beat(0, "b")}, now=after)
    assert seen.orphans(after, T0_MS + 600_000) == []
    seen.update({"rtml.replies.a": beat(605, "a"), "rtml.replies.b": beat(0, "b")}, now=after + 10)
    seen.update({"rtml.replies.a": beat(615, "a"), "rtml.replies.b": beat(0, "b")}, now=after + 30)
    assert seen.orphans(after + 30, T0_MS + 630_000) == ["rtml.replies.b"]


def test_passes_too_far_apart_break_the_watch() -> None:
    seen = watch()
    seen.update({"rtml.replies.quiet": None}, now=0.0)
    seen.update({"rtml.replies.quiet": None}, now=100.0)  # the observer was frozen for 100 s
    assert seen.orphans(100.0, T0_MS) == []
    verdict = judge(Sighting(None, since=100.0), POLICY, 130.0, T0_MS)
    assert not verdict.orphan and "30 s more watching" in verdict.reason


def test_a_topic_gone_from_a_pass_is_forgotten() -> None:
    seen = watch()
    seen.update({"rtml.replies.x": None}, now=0.0)
    seen.update({}, now=30.0)
    seen.update({"rtml.replies.x": None}, now=60.0)  # re-created meanwhile: watched from 60 s
    assert seen.orphans(60.0, T0_MS) == []
    assert seen.unchanged("rtml.replies.x", None) and not seen.unchanged("rtml.replies.x", beat(1))


def test_the_orphan_bound_must_outlive_every_request_deadline() -> None:
    assert GatewaySettings(reply_topic_orphan_after_s=60).max_timeout_ms == 60000
    with pytest.raises(SettingsError, match="reply_topic_orphan_after_s"):
        load_settings(gateway={"reply_topic_orphan_after_s": 30})


class FakeOwners:
    """ReplyOwners on an in-memory broker: topic -> heartbeat, and what each call saw."""

    def __init__(self, _kafka: KafkaSettings) -> None:
        self.prefix = PREFIX
        self.topics: dict[str, str | None] = {}
        self.deleted: list[str] = []
        self.beats: list[str] = []
        self.failing = False
        self.on_reread: dict[str, str | None] = {}

    def beat(self, topic: str, instance_id: str) -> None:
        self.beats.append(topic)

    def reply_topics(self, own: Iterable[str] = ()) -> list[str]:
        if self.failing:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return candidates(self.topics, self.prefix, own)

    def heartbeats(self, topics: Iterable[str]) -> dict[str, str | None]:
        return {t: self.topics[t] for t in topics if t in self.topics}

    def delete(self, topics: list[str]) -> list[str]:
        self.deleted.extend(topics)
        for topic in topics:
            self.topics.pop(topic)
        return topics

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def janitor(monkeypatch: pytest.MonkeyPatch) -> tuple[ReplyTopicJanitor, FakeOwners, Clock]:
    monkeypatch.setattr(reply_janitor, "ReplyOwners", FakeOwners)
    clock = Clock()
    gateway = GatewaySettings(reply_topic_orphan_after_s=60, reply_topic_gc_interval_s=10)
    janitor = ReplyTopicJanitor(KafkaSettings(), gateway, f"{PREFIX}me", "me", clock=clock)
    assert isinstance(janitor.owners, FakeOwners)
    return janitor, janitor.owners, clock


def test_the_janitor_deletes_what_stayed_silent_and_never_its_own_topic(
    janitor: tuple[ReplyTopicJanitor, FakeOwners, Clock],
) -> None:
    gc, broker, clock = janitor
    start_ms = now_ms()  # the janitor judges ages by the real wall clock: these beats are fresh
    broker.topics = {f"{PREFIX}me": None, f"{PREFIX}dead": encode_heartbeat("dead", start_ms)}
    for second in range(0, 70, 10):
        clock.now = float(second)
        broker.topics[f"{PREFIX}live"] = encode_heartbeat("live", start_ms + second * 1000)
        assert gc.sweep() == ([f"{PREFIX}dead"] if second == 60 else [])
    assert broker.deleted == [f"{PREFIX}dead"]
    assert set(broker.topics) == {f"{PREFIX}me", f"{PREFIX}live"}


def test_the_janitor_spares_a_topic_whose_heartbeat_changes_before_deletion(
    janitor: tuple[ReplyTopicJanitor, FakeOwners, Clock],
) -> None:
    gc, broker, clock = janitor
    broker.topics = {f"{PREFIX}late": None}
    for second in range(0, 70, 10):
        clock.now = float(second)
        gc.observe()
    broker.topics[f"{PREFIX}late"] = encode_heartbeat(
        "late", now_ms()
    )  # its gateway beat between the pass and the delete
    verdicts, deleted = gc.collect()
    assert deleted == [] and not verdicts[0].orphan and "changed" in verdicts[0].reason


def test_a_dry_run_deletes_nothing_and_a_failed_pass_forgets(
    janitor: tuple[ReplyTopicJanitor, FakeOwners, Clock],
) -> None:
    gc, broker, clock = janitor
    broker.topics = {f"{PREFIX}old": None}
    for second in range(0, 70, 10):
        clock.now = float(second)
        gc.observe()
    verdicts, deleted = gc.collect(dry_run=True)
    assert [v.orphan for v in verdicts] == [True] and deleted == [] and broker.deleted == []
    broker.failing = True
    clock.now = 70.0
    assert gc.sweep() == []
    broker.failing = False
    clock.now = 80.0
    assert gc.sweep() == []  # watched again from 80 s
    assert f"{PREFIX}old" in broker.topics
