"""Plug-in loading: modules named by the `litzoo.plugins` entry-point group and by the
LITZOO_PLUGINS environment variable are imported once, when a registry is first read."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "litzoo.plugins"
PLUGINS_ENV = "LITZOO_PLUGINS"

_loaded: set[str] = set()


class PluginError(ImportError):
    """A plug-in module named by an entry point or LITZOO_PLUGINS failed to import."""


def plugin_modules() -> list[tuple[str, str]]:
    """(module, where it was named) for every plug-in currently declared."""
    declared = [
        (ep.value.split(":")[0], f"entry point {ep.name!r}")
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    ]
    env = os.environ.get(PLUGINS_ENV, "")
    declared += [(name.strip(), PLUGINS_ENV) for name in env.split(",") if name.strip()]
    return declared


def load_plugins() -> None:
    """Import every declared plug-in module not imported yet (cheap when nothing is new)."""
    for module, source in plugin_modules():
        if module in _loaded:
            continue
        _loaded.add(module)
        try:
            importlib.import_module(module)
        except Exception as err:
            _loaded.discard(module)
            raise PluginError(
                f"litzoo plug-in {module!r} (named by {source}) failed to import: {err}. "
                f"Install it, fix it, or remove it from {source}."
            ) from err
