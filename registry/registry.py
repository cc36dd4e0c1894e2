"""One registry class for models and datamodules: names map to classes plus the metadata
that the CLI and the contract tests need, so neither keeps a side table."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from registry.checks import ConfigurationError, command_name

T = TypeVar("T", bound=type)

NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")


class RegistryError(ConfigurationError, LookupError):
    """A name that is unknown, malformed or registered twice."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """A registered class and what the CLI and the tests need to know about it.

    Models fill `data` (default datamodule), `monitor`/`mode` and `accepts` (data kinds; empty
    means the kind of the default data). Datamodules fill `kind` (what their batches are) and
    `dims` (attributes whose values the CLI passes to model arguments of the same name)."""

    name: str
    cls: type
    family: str = ""
    data: str | None = None
    monitor: str | None = None
    mode: str = "min"
    accepts: tuple[str, ...] = ()
    kind: str | None = None
    dims: tuple[str, ...] = ()
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    test_data_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def class_path(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    @property
    def summary(self) -> str:
        """The docstring's first paragraph on one line (a sentence is not cut at a line break)."""
        doc = inspect.getdoc(self.cls) or ""
        return " ".join(doc.strip().split("\n\n")[0].split())

    @property
    def defined_at(self) -> str:
        try:
            line = inspect.getsourcelines(self.cls)[1]
            return f"{self.class_path} ({inspect.getsourcefile(self.cls)}:{line})"
        except (OSError, TypeError):
            return self.class_path


class Registry:
    """Maps short lowercase names to classes; `kind` ("model", "datamodule") names it in errors."""

    def __init__(self, kind: str, before_read: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._before_read = before_read

    def register(self, name: str, **metadata: Any) -> Callable[[T], T]:
        """Class decorator: ``@MODELS.register("lenet", family="cnn", ...)``."""

        def decorator(cls: T) -> T:
            self.add(Entry(name=name, cls=cls, **metadata))
            return cls

        return decorator

    def add(self, entry: Entry) -> None:
        if not NAME_PATTERN.match(entry.name):
            raise RegistryError(
                f"invalid {self.kind} name {entry.name!r}: use lowercase letters, digits and "
                f"underscores only (e.g. {re.sub(r'[^a-z0-9_]', '_', entry.name.lower())!r})"
            )
        if entry.mode not in ("min", "max"):
            raise RegistryError(f"{self.kind} {entry.name!r}: mode must be 'min' or 'max'")
        old = self._entries.get(entry.name)
        if old is not None and old.class_path != entry.class_path:
            raise RegistryError(
                f"{self.kind} name {entry.name!r} is registered twice: first by "
                f"{old.defined_at}, then by {entry.defined_at}. Rename one of them."
            )
        self._entries[entry.name] = entry

    def registered(self) -> set[str]:
        """The names registered so far, without loading plug-ins first."""
        return set(self._entries)

    def remove(self, names: set[str]) -> None:
        """Drop entries (those of a plug-in that failed halfway through importing)."""
        for name in names:
            self._entries.pop(name, None)

    def _read(self) -> dict[str, Entry]:
        if self._before_read is not None:
            self._before_read()
        return self._entries

    def names(self, pattern: str | None = None, family: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell-style pattern and a family."""
        return sorted(
            name
            for name, entry in self._read().items()
            if (pattern is None or fnmatch.fnmatchcase(name, pattern))
            and (family is None or entry.family == family)
        )

    def families(self) -> list[str]:
        return sorted({entry.family for entry in self._read().values() if entry.family})

    def entry(self, name: str) -> Entry:
        entries = self._read()
        if name in entries:
            return entries[name]
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = "list" if self.kind == "model" else "list --data"
        raise RegistryError(
            f"unknown {self.kind} {name!r}.{hint} Run `{command_name()} {listing}` to see them all."
        )

    def entry_for_class(self, cls_or_path: type | str) -> Entry | None:
        """The entry registered for a class, a dotted class path or a class name, if any."""
        for entry in self._read().values():
            if cls_or_path in (entry.cls, entry.class_path, entry.cls.__name__):
                return entry
        return None

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.entry(name).cls(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._read()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._read())
