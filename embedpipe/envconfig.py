"""Typed readers for settings that come from environment variables.

Services read the environment once, at their entry point, into a frozen settings object;
these helpers turn a bad value into a clear message naming the variable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting in the environment is malformed."""


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """The variable's value, or `default` when it is unset or empty."""
    value = env.get(name, "").strip()
    return value or default


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """An integer variable no smaller than `minimum`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    """A float variable no smaller than `minimum`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def settings_or_exit(read: Callable[[], T]) -> T:
    """Settings for an entry point: a bad value ends the process with a one-line message
    naming the variable (exit code 2), not a traceback."""
    try:
        return read()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
