"""Rules between settings: what the range of one field cannot say.

Called by the model validators in :mod:`runtime.settings`; each function returns one
message per problem, naming the keys involved and their values, so one error lists them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from pydantic import BaseModel

    from runtime.settings import DriftSettings, Settings

PRODUCTION_EXPLICIT = {
    "kafka.bootstrap_servers": "a broker on this machine",
    "kafka.replication_factor": "one copy of every message",
    "redis.url": "a Redis server on this machine",  # only while redis.enabled
    "registry.root": "models in the home directory of whoever runs the process",
}
"""What ``env: production`` refuses to take from the field defaults, and why each default is a
developer's. Explicit means given by any source (YAML, ``RTML_*``, the conventional
``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``, keyword arguments), even with the default's value."""


def refuse(problems: list[str]) -> None:
    """Raise one ValueError listing every problem (pydantic names the section it came from)."""
    if problems:
        raise ValueError("; ".join(problems))


def window_problem(window_s: float, step_s: float, window_key: str, step_key: str) -> str | None:
    """Why a drift window cannot work (None when it can): it must be a whole number (>= 1) of
    steps, in the milliseconds the detector counts in (drift.config.window_ms)."""
    window, step = round(window_s * 1000), round(step_s * 1000)
    if step > 0 and window >= step and window % step == 0:
        return None
    return f"{window_key} ({window_s}) is not a whole number (>= 1) of {step_key} ({step_s})"


def drift_problems(drift: DriftSettings) -> list[str]:
    """The default window and every per-model override (with what it inherits), and the backoffs."""
    problems = [window_problem(drift.window_s, drift.step_s, "window_s", "step_s")]
    for name, model in drift.models.items():
        if model.window_s is None and model.step_s is None:
            continue  # the default window, checked above
        window = drift.window_s if model.window_s is None else model.window_s
        step = drift.step_s if model.step_s is None else model.step_s
        window_key = "window_s" if model.window_s is None else f"models.{name}.window_s"
        step_key = "step_s" if model.step_s is None else f"models.{name}.step_s"
        problems.append(window_problem(window, step, window_key, step_key))
    if drift.forward_backoff_s > drift.forward_max_backoff_s:
        problems.append(
            f"forward_backoff_s ({drift.forward_backoff_s}) exceeds "
            f"forward_max_backoff_s ({drift.forward_max_backoff_s})"
        )
    return [problem for problem in problems if problem]


def topic_problems(settings: Settings) -> list[str]:
    """Topics rtml writes must not share a name, nor fall under the request or reply prefix
    (a model or gateway could otherwise claim them)."""
    kafka, drift = settings.kafka, settings.drift
    topics = {
        "kafka.predictions_topic": kafka.predictions_topic,
        "kafka.dlq_topic": kafka.dlq_topic,
        "drift.partials_topic": drift.partials_topic,
        "drift.alerts_topic": drift.alerts_topic,
        "drift.dead_letter_topic": drift.dead_letter_topic,
    }
    prefixes = {"kafka.request_topic_prefix": kafka.request_topic_prefix}
    prefixes["kafka.reply_topic_prefix"] = kafka.reply_topic_prefix
    keys = list(topics)
    problems = [
        f"{a} and {b} are both {topics[a]!r}"
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if topics[a] == topics[b]
    ]
    problems += [
        f"{key} ({topic!r}) starts with {prefix_key} ({prefix!r})"
        for key, topic in topics.items()
        for prefix_key, prefix in prefixes.items()
        if topic.startswith(prefix)
    ]
    request, reply = kafka.request_topic_prefix, kafka.reply_topic_prefix
    if request.startswith(reply) or reply.startswith(request):
        problems.append(
            f"kafka.request_topic_prefix ({request!r}) and kafka.reply_topic_prefix ({reply!r}) overlap"
        )
    return problems


def production_problems(settings: Settings) -> list[str]:
    """With ``env: production``, one message listing every :data:`PRODUCTION_EXPLICIT` key left
    at its default."""
    if settings.env != "production":
        return []
    unset = []
    for key, why in PRODUCTION_EXPLICIT.items():
        section_name, field = key.split(".")
        if key == "redis.url" and not settings.redis.enabled:
            continue
        section: BaseModel = getattr(settings, section_name)
        if field not in section.model_fields_set:
            default = getattr(section, field)  # the code's default: no secret in it
            shown = default.get_secret_value() if isinstance(default, SecretStr) else default
            unset.append(f"{key} (default {shown}: {why})")
    if not unset:
        return []
    return [
        "env is production, but these settings were left at their developer defaults; set each "
        "explicitly (YAML, RTML_*, or KAFKA_BOOTSTRAP_SERVERS / REDIS_URL):\n    - " + "\n    - ".join(unset)
    ]
