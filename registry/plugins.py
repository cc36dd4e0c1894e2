"""Plug-in loading: modules named by the `litzoo.plugins` entry-point group and by the
LITZOO_PLUGINS environment variable are imported when a registry is first read.

The entry points are scanned once per process (a scan costs milliseconds, and registries are
read on every lookup). A plug-in that fails to import, or registers a name that is taken, is
reported with a `PluginWarning` and its half-made registrations are removed, so one bad plug-in
never stops the others, the built-in models or the command line."""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from importlib.metadata import entry_points
from typing import Protocol

ENTRY_POINT_GROUP = "litzoo.plugins"
PLUGINS_ENV = "LITZOO_PLUGINS"
OWN_DISTRIBUTION = "litzoo"  # its entry points (our own packages) load first

_loaded: set[str] = set()
_failed: dict[str, str] = {}


class PluginWarning(UserWarning):
    """A plug-in that could not be loaded and was skipped."""


class _Registry(Protocol):
    def registered(self) -> set[str]: ...
    def remove(self, names: set[str]) -> None: ...


@functools.cache
def _entry_point_modules() -> tuple[tuple[str, str], ...]:
    """(module, where it was named) for every entry point, litzoo's own first: read once."""
    found = sorted(
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (getattr(ep.dist, "name", None) != OWN_DISTRIBUTION, ep.name),
    )
    return tuple((ep.value.split(":")[0], f"entry point {ep.name!r}") for ep in found)


def plugin_modules() -> list[tuple[str, str]]:
    """(module, where it was named) for every plug-in currently declared."""
    env = os.environ.get(PLUGINS_ENV, "")
    named = [(name.strip(), PLUGINS_ENV) for name in env.split(",") if name.strip()]
    return [*_entry_point_modules(), *named]


def load_plugins(registries: tuple[_Registry, ...] = ()) -> None:
    """Import every declared plug-in module not tried yet (cheap when nothing is new)."""
    for module, source in plugin_modules():
        if module in _loaded:
            continue
        _loaded.add(module)
        before = [registry.registered() for registry in registries]
        try:
            importlib.import_module(module)
        except Exception as err:
            for registry, names in zip(registries, before, strict=True):
                registry.remove(registry.registered() - names)
            _failed[module] = (
                f"plug-in {module!r} (named by {source}) was skipped: {err}. "
                f"Fix it, or remove it from {source}."
            )
            warnings.warn(_failed[module], PluginWarning, stacklevel=2)


def plugin_failures() -> list[str]:
    """A message for every plug-in that failed to load in this process."""
    return list(_failed.values())
