"""Where settings come from, and the checks that run before any value is used.

:mod:`runtime.settings` declares the fields; this module reads the YAML file named by
``RTML_CONFIG`` (relative paths resolve against the file's directory), maps the
conventional ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` onto settings, refuses keys that
name no setting (YAML keys at every level, ``RTML_*`` environment variables) and gives
the per-user default directories (XDG). Nothing here writes to ``os.environ``.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource

from runtime.errors import SettingsError

ENV_PREFIX = "RTML_"
CONFIG_VAR = "RTML_CONFIG"
NON_SETTING_VARS = frozenset({CONFIG_VAR, "RTML_URL", "RTML_API_KEY"})
"""``RTML_*`` variables that are not settings: the config file, and the client SDK's gateway URL
and API key (rtml_client.cli), which share a shell with the server's variables."""
CONVENTIONAL_VARS = {"KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"), "REDIS_URL": ("redis", "url")}
"""Widely used names honoured below ``RTML_*`` (which wins) and above the YAML file."""

Shape = Literal["model", "mapping", "path", "value"]


def xdg_dir(variable: str, fallback: str, *parts: str) -> Path:
    """``$variable/rtml/parts``, or ``~/fallback/rtml/parts`` when it is unset or not absolute
    (the XDG base directory specification ignores relative values)."""
    value = os.environ.get(variable, "")
    base = Path(value) if value and Path(value).is_absolute() else Path.home() / fallback
    return base.joinpath("rtml", *parts)


# ------------------------------------------------------------------ field shapes


def _shape(annotation: Any) -> tuple[Shape, type[BaseModel] | None]:
    """What a field holds: a section (model), a mapping (of sections or values), a path, a value."""
    if get_origin(annotation) in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _shape(present[0]) if len(present) == 1 else ("value", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if get_origin(annotation) is dict:
        kind, model = _shape(get_args(annotation)[1])
        return "mapping", model if kind == "model" else None
    if annotation is Path:
        return "path", None
    return "value", None


def _did_you_mean(name: str, model: type[BaseModel]) -> str | None:
    close = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown(path: list[str], model: type[BaseModel], spell: Any, rest: Sequence[str] = ()) -> str:
    guess = _did_you_mean(path[-1], model)
    known = ", ".join(model.model_fields)
    hint = f"did you mean {spell([*path[:-1], guess, *rest])}?" if guess else f"known: {known}"
    return f"no setting {'.'.join(path)!r} ({hint})"


# ------------------------------------------------------------------ environment


def _env_name(path: list[str]) -> str:
    return ENV_PREFIX + "__".join(path).upper()


def _env_problem(model: type[BaseModel], parts: list[str], done: list[str]) -> str | None:
    path = [*done, parts[0]]
    field = model.model_fields.get(parts[0])
    if field is None:
        return _unknown(path, model, _env_name, parts[1:])
    rest = parts[1:]
    kind, section = _shape(field.annotation)
    if not rest:
        return None
    if kind == "model" and section is not None:
        return _env_problem(section, rest, path)
    if kind == "mapping":
        # dict[str, str] takes any key; dict[str, Section] takes a key, then that section's fields.
        if section is None or len(rest) == 1:
            return None
        return _env_problem(section, rest[1:], [*path, rest[0]])
    return f"{'.'.join(path)!r} is a value, not a section"


def unknown_env_vars(settings_cls: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """One line per ``RTML_*`` variable that names no setting (case-insensitive, like the reader)."""
    problems = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NON_SETTING_VARS:
            continue
        problem = _env_problem(settings_cls, name[len(ENV_PREFIX) :].lower().split("__"), [])
        if problem:
            problems.append(f"environment variable {name}: {problem}")
    return problems


# ------------------------------------------------------------------ YAML file


def _yaml_spelling(path: list[str]) -> str:
    return repr(".".join(path))


def unknown_yaml_keys(model: type[BaseModel], data: Mapping[Any, Any], done: list[str]) -> list[str]:
    """One line per key of ``data`` (at any depth) that names no setting."""
    problems: list[str] = []
    for key, value in data.items():
        path = [*done, str(key)]
        field = model.model_fields.get(str(key))
        if field is None:
            problems.append(_unknown(path, model, _yaml_spelling))
            continue
        kind, section = _shape(field.annotation)
        if section is None or not isinstance(value, Mapping):
            continue
        if kind == "model":
            problems += unknown_yaml_keys(section, value, path)
        else:
            for name, entry in value.items():
                if isinstance(entry, Mapping):
                    problems += unknown_yaml_keys(section, entry, [*path, str(name)])
    return problems


def resolve_paths(model: type[BaseModel], data: Mapping[Any, Any], base: Path) -> dict[Any, Any]:
    """``data`` with every relative (or ``~``) path field made absolute against ``base``."""
    resolved: dict[Any, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        kind, section = _shape(field.annotation) if field else ("value", None)
        if kind == "path" and isinstance(value, str):
            value = Path(os.path.normpath(base / Path(value).expanduser()))
        elif kind == "model" and section is not None and isinstance(value, Mapping):
            value = resolve_paths(section, value, base)
        elif kind == "mapping" and section is not None and isinstance(value, Mapping):
            value = {
                name: resolve_paths(section, entry, base) if isinstance(entry, Mapping) else entry
                for name, entry in value.items()
            }
        resolved[key] = value
    return resolved


def config_file(environ: Mapping[str, str]) -> Path | None:
    """The YAML file named by ``RTML_CONFIG`` (None when unset or empty)."""
    value = environ.get(CONFIG_VAR, "")
    return Path(value).absolute() if value else None


def read_config(settings_cls: type[BaseModel], path: Path) -> tuple[dict[str, Any], list[str]]:
    """(data with paths resolved, unknown-key problems) of one config file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"{CONFIG_VAR} names {path}, which cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} holds a {type(data).__name__}; expected a mapping of settings")
    problems = [f"{path}: {problem}" for problem in unknown_yaml_keys(settings_cls, data, [])]
    return resolve_paths(settings_cls, data, path.parent), problems


def conventional_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` (when non-empty) as nested settings values."""
    values: dict[str, Any] = {}
    for variable, (section, field) in CONVENTIONAL_VARS.items():
        if environ.get(variable):
            values.setdefault(section, {})[field] = environ[variable]
    return values


class ConventionalEnvSource(InitSettingsSource):
    """``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``: below ``RTML_*``, above the YAML file."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls, conventional_values(environ))


def refuse_unknown(problems: list[str]) -> None:
    if problems:
        listed = "\n  ".join(problems)
        raise SettingsError(f"unknown settings (every key is in runtime/settings.py):\n  {listed}")


def describe(exc: ValidationError) -> str:
    """A ValidationError as one line per problem, each led by the dotted key."""
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        # Numbers only: a string may be a secret (a Redis URL with its password).
        got = error.get("input")
        value = f" (got {got!r})" if isinstance(got, int | float) and error["type"] != "value_error" else ""
        lines.append(f"{key}: {message}{value}" if key else f"{message}{value}")
    return "invalid settings:\n  " + "\n  ".join(lines)
