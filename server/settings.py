"""How a setting is declared, parsed, checked and shown: the machinery behind server/config.py.

A setting is a field of one of config.py's frozen dataclasses whose default comes from
``setting(...)``: the field's annotation is its type, and the declaration carries its
environment name, help, bounds and whether it is a secret. Everything else (the table of
``SETTINGS``, parsing from the environment, ``--help``, the README table, the masked
``videoconsult config`` listing) is derived from those fields, so a setting is written once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

# A custom parser gets the environment name (for its messages) and the raw text.
Parse = Callable[[str, str], object]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Declared:
    """What a ``setting(...)`` field declares besides its type and default."""

    env: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    min_length: int = 0
    url_schemes: tuple[str, ...] = ()
    secret: bool = False
    parse: Parse | None = None


def setting(
    default: T,
    *,
    env: str,
    help: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    min_length: int = 0,
    url_schemes: tuple[str, ...] = (),
    secret: bool = False,
    parse: Parse | None = None,
    default_factory: Callable[[], T] | None = None,
) -> T:
    """Declare a setting as a dataclass field (its annotation gives the type)."""
    declared = Declared(
        env, help, minimum, maximum, choices, min_length, url_schemes, secret, parse
    )
    metadata = {"setting": declared}
    if default_factory is not None:
        made: T = dataclasses.field(default_factory=default_factory, metadata=metadata)
        return made
    field: T = dataclasses.field(default=default, metadata=metadata)
    return field


@dataclass(frozen=True)
class Setting:
    """One declared setting, as found on the configuration dataclasses."""

    path: tuple[str, ...]  # attribute path from Config, e.g. ("smtp", "host")
    kind: Any  # the resolved annotation: str, int, float, bool, Path, str | None, ...
    default: object  # dataclasses.MISSING when made by a factory
    declared: Declared

    @property
    def env(self) -> str:
        return self.declared.env

    @property
    def name(self) -> str:
        """The key of CLI overrides and the flag without dashes: the env name lower-cased."""
        return self.declared.env.lower()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> object:
        declared = self.declared
        if declared.parse is not None:
            return declared.parse(self.env, raw)
        kind = _without_none(self.kind)
        if kind is bool:
            return _parse_bool(self.env, raw)
        if kind is int:
            return _bounded(self.env, _parse_int(self.env, raw), declared)
        if kind is float:
            return _bounded(self.env, _parse_float(self.env, raw), declared)
        if kind is Path:
            return Path(raw)
        if kind is str:
            return _parse_text(self.env, raw, declared)
        raise TypeError(f"{self.env}: no parser for {self.kind!r}; give parse=")

    def shown(self, value: object) -> str:
        """The value as ``videoconsult config`` prints it: secrets masked."""
        if value is None or value == "" or value == ():
            return ""
        if self.declared.secret:
            return "***"
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return mask_url_password(str(value))


def settings_of(cls: type[Any], path: tuple[str, ...] = ()) -> Iterator[Setting]:
    """Every declared setting of a configuration dataclass, its nested groups included."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        declared = field.metadata.get("setting")
        if isinstance(declared, Declared):
            yield Setting((*path, field.name), kind, field.default, declared)
        elif dataclasses.is_dataclass(kind) and isinstance(kind, type):
            yield from settings_of(kind, (*path, field.name))


def build(cls: Callable[..., T], group: type[Any], raw: Mapping[str, object]) -> T:
    """Construct ``cls`` from parsed values keyed by attribute path (groups built first)."""
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(group)
    for field in dataclasses.fields(group):
        kind = hints[field.name]
        if isinstance(field.metadata.get("setting"), Declared):
            if field.name in raw:
                kwargs[field.name] = raw[field.name]
        elif dataclasses.is_dataclass(kind) and isinstance(kind, type):
            nested = raw.get(field.name)
            kwargs[field.name] = build(kind, kind, nested if isinstance(nested, Mapping) else {})
    return cls(**kwargs)


def mask_url_password(text: str) -> str:
    """``postgresql://vc:secret@db/x`` -> ``postgresql://vc:***@db/x``; other text unchanged."""
    if "://" not in text or "@" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.password is None:
        return text
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def _without_none(kind: Any) -> Any:
    if isinstance(kind, types.UnionType):
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _parse_bool(env: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{env}: expected true or false, got {raw!r}")


def _parse_int(env: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{env}: expected a whole number, got {raw!r}") from None


def _parse_float(env: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{env}: expected a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{env}: expected a finite number, got {raw!r}")
    return value


def _bounded(env: str, value: T, declared: Declared) -> T:
    assert isinstance(value, int | float)
    low, high = declared.minimum, declared.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            raise ConfigError(f"{env}: must be between {_num(low)} and {_num(high)}, got {value}")
        if low is not None:
            raise ConfigError(f"{env}: must be at least {_num(low)}, got {value}")
        raise ConfigError(f"{env}: must be at most {_num(high or 0)}, got {value}")
    return value


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _parse_text(env: str, raw: str, declared: Declared) -> str:
    if declared.choices and raw not in declared.choices:
        allowed = declared.choices
        wanted = " or ".join(allowed) if len(allowed) < 3 else "one of " + ", ".join(allowed)
        raise ConfigError(f"{env}: expected {wanted}, got {raw!r}")
    if len(raw) < declared.min_length:
        raise ConfigError(f"{env}: must be at least {declared.min_length} characters")
    if declared.url_schemes:
        return check_url(env, raw, declared.url_schemes)
    return raw


def check_url(env: str, raw: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{env}: malformed URL ({exc})") from None
    if parts.scheme not in schemes:
        wanted = " or ".join(sorted(schemes))
        raise ConfigError(
            f"{env}: scheme must be {wanted}, got {parts.scheme or 'none'!r} in {raw!r}"
        )
    if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        raise ConfigError(f"{env}: no host in {raw!r}")
    return raw


def value_at(root: object, spec: Setting) -> object:
    value = root
    for attribute in spec.path:
        value = getattr(value, attribute)
    return value


def rules_of(spec: Setting) -> str:
    """Default and bounds in words: ``default 25; 1 to 65535``."""
    declared = spec.declared
    parts: list[str] = []
    if spec.default is dataclasses.MISSING:
        parts.append("default: generated")
    elif spec.default in (None, "", ()):
        parts.append("default: unset")
    else:
        parts.append(f"default {spec.shown(spec.default)}")
    low, high = declared.minimum, declared.maximum
    if low is not None and high is not None:
        parts.append(f"{_num(low)} to {_num(high)}")
    elif low is not None:
        parts.append(f"at least {_num(low)}")
    if declared.choices:
        parts.append("one of " + ", ".join(declared.choices))
    if declared.min_length:
        parts.append(f"at least {declared.min_length} characters")
    if declared.secret:
        parts.append("secret")
    return "; ".join(parts)


def setting_help(spec: Setting) -> str:
    """The ``--help`` line of a setting (argparse expands no % here)."""
    return f"{spec.declared.help} ({rules_of(spec)}) [{spec.env}]".replace("%", "%%")


def markdown_table(specs: tuple[Setting, ...]) -> str:
    """The README's table of settings, one row per setting."""
    rows = ["| variable | meaning | default and bounds |", "|---|---|---|"]
    for spec in specs:
        meaning = spec.declared.help.replace("|", "\\|")
        rules = rules_of(spec).replace("|", "\\|")
        rows.append(f"| `{spec.env}` | {meaning} | {rules} |")
    return "\n".join(rows) + "\n"


def effective_lines(root: object, specs: tuple[Setting, ...]) -> list[str]:
    """``ENV=value`` per setting as this node would run, secrets masked."""
    return [f"{spec.env}={spec.shown(value_at(root, spec))}" for spec in specs]
