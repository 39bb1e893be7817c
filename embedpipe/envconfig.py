"""Settings from environment variables, typed and checked by pydantic.

Each service keeps its settings in a frozen dataclass; a field read from the environment
names its variable and its bounds in its annotation:

    port: Annotated[int, variable("GATEWAY_PORT", ge=0, le=65535)] = 8080

`read_env(cls, env)` reads every such field at the entry point (an unset or empty variable
means the default) and turns any bad value into one `ConfigError` naming the variables and
what is wrong; the rest of the code only ever sees the typed object. Direct construction
(tests, code) is the dataclass's own and reads no environment.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting in the environment is malformed."""


def variable(name: str, **constraints: Any) -> Any:
    """The annotation of a field read from the variable `name` (pydantic's `Field`
    constraints: ge, gt, le, min_length, ...)."""
    return Field(validation_alias=name, **constraints)


def variables(cls: type[Any]) -> set[str]:
    """The variables the fields of dataclass `cls` are read from."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = set()
    for field in dataclasses.fields(cls):
        for extra in getattr(hints[field.name], "__metadata__", ()):
            if isinstance(extra, FieldInfo) and isinstance(extra.validation_alias, str):
                names.add(extra.validation_alias)
    return names


def config_error(exc: ValidationError, where: str = "") -> ConfigError:
    """One message naming every bad variable (or field, under `where`) and what is wrong."""
    problems = []
    for error in exc.errors():
        path = where
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        message = str(error["msg"])
        if error["type"] == "value_error":  # our own check's words, as they are
            message = message.removeprefix("Value error, ")
        else:  # pydantic's: "Input should be ..." reads on after the name
            message = message[:1].lower() + message[1:]
            if error["type"] != "missing" and "input" in error:
                message += f" (got {str(error['input'])[:60]!r})"
        problems.append(f"{path}: {message}" if path else message)
    return ConfigError("; ".join(problems))


def read_env(cls: type[T], environ: Mapping[str, str], **computed: Any) -> T:
    """An instance of dataclass `cls` from the variables its fields name; `computed` gives
    fields that are not read from one variable (by field name)."""
    wanted = variables(cls)
    values: dict[str, Any] = {
        name: value for name, value in environ.items() if name in wanted and value.strip()
    }
    try:
        return TypeAdapter(cls).validate_python({**values, **computed})
    except ValidationError as exc:
        raise config_error(exc) from None


def settings_or_exit(read: Callable[[], T]) -> T:
    """Settings for an entry point: a bad value ends the process with a one-line message
    naming the variable (exit code 2), not a traceback."""
    try:
        return read()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
