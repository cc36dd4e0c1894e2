"""Checks of settings that models and datamodules share, and the one error type they raise.

A `ConfigurationError` means "this run cannot work as configured": a hyperparameter out of range,
a name that is not registered, data a model cannot take, a missing or corrupt data file. Its
message says what was wrong and how to fix it; the command line prints it as one paragraph and
exits with status 2. It lives here, beside the registry that every model, datamodule and plug-in
already imports, so that both sides raise the same type.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigurationError(ValueError):
    """A setting, name or file the run cannot work with; the message says how to fix it."""


def command_name() -> str:
    """How the user invoked the command line, for messages that tell what to run next."""
    return "python cli.py" if Path(sys.argv[0]).name == "cli.py" else "litzoo"


def check_positive(**values: float) -> None:
    """Raise a ConfigurationError naming the first value that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigurationError(f"{name} must be > 0, got {value}")


def check_non_negative(**values: float) -> None:
    """Raise a ConfigurationError naming the first value that is not >= 0."""
    for name, value in values.items():
        if not value >= 0:
            raise ConfigurationError(f"{name} must be >= 0, got {value}")


def check_probability(**values: float) -> None:
    """Raise a ConfigurationError naming the first dropout-like probability outside [0, 1)."""
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ConfigurationError(f"{name} must be in [0, 1), got {value}")


def check_fraction(**values: float) -> None:
    """Raise a ConfigurationError naming the first value outside [0, 1]."""
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must be in [0, 1], got {value}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise a ConfigurationError when `value` is not one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )


def configuration_error_in(err: BaseException | None) -> ConfigurationError | None:
    """The ConfigurationError that `err` is or wraps (a parser wraps what a class raises)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigurationError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
