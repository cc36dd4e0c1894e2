"""Matplotlib for pictures written to files: the non-interactive Agg backend, imported on first
use so that importing a callback costs nothing."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
