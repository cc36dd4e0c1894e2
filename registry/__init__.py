"""The model and datamodule registries (and nothing else: this package imports none of ours)."""

from __future__ import annotations

from typing import Any

from registry.plugins import ENTRY_POINT_GROUP, PLUGINS_ENV, PluginError, load_plugins
from registry.registry import Entry, Registry, RegistryError

MODELS = Registry("model", before_read=load_plugins)
DATAMODULES = Registry("datamodule", before_read=load_plugins)


def register_model(
    name: str,
    *,
    family: str,
    data: str | None = None,
    monitor: str = "val/loss",
    mode: str = "min",
    test_kwargs: dict[str, Any] | None = None,
    test_data_kwargs: dict[str, Any] | None = None,
):
    """Register a LightningModule under `name`.

    `data` names its default datamodule, `monitor`/`mode` the metric that checkpoints and early
    stopping follow, `test_kwargs` (and `test_data_kwargs`) the small settings with which the
    contract test trains it in seconds.
    """
    return MODELS.register(
        name,
        family=family,
        data=data,
        monitor=monitor,
        mode=mode,
        test_kwargs=test_kwargs or {},
        test_data_kwargs=test_data_kwargs or {},
    )


def register_datamodule(name: str, *, test_kwargs: dict[str, Any] | None = None):
    """Register a LightningDataModule under `name`; `test_kwargs` keep it small in tests."""
    return DATAMODULES.register(name, family="data", test_kwargs=test_kwargs or {})


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    return MODELS.names(pattern, family)


def get_model(name: str, **kwargs: Any) -> Any:
    return MODELS.build(name, **kwargs)


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def model_info(name: str, with_params: bool = False) -> dict[str, Any]:
    """The entry as a dict; `with_params` builds the model with defaults to count parameters."""
    entry = MODELS.entry(name)
    info: dict[str, Any] = {
        "name": entry.name,
        "class": entry.class_path,
        "family": entry.family,
        "data": entry.data,
        "monitor": entry.monitor,
        "mode": entry.mode,
        "summary": entry.summary,
    }
    if with_params:
        info["parameters"] = count_parameters(entry.cls())
    return info


def list_datamodules(pattern: str | None = None) -> list[str]:
    return DATAMODULES.names(pattern)


def get_datamodule(name: str, **kwargs: Any) -> Any:
    return DATAMODULES.build(name, **kwargs)


__all__ = [
    "DATAMODULES",
    "ENTRY_POINT_GROUP",
    "MODELS",
    "PLUGINS_ENV",
    "Entry",
    "PluginError",
    "Registry",
    "RegistryError",
    "count_parameters",
    "get_datamodule",
    "get_model",
    "list_datamodules",
    "list_models",
    "load_plugins",
    "model_info",
    "register_datamodule",
    "register_model",
]
