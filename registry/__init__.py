"""The model and datamodule registries (and nothing else: this package imports none of ours)."""

from __future__ import annotations

from typing import Any

from registry.checks import ConfigurationError, command_name, configuration_error_in
from registry.plugins import (
    ENTRY_POINT_GROUP,
    PLUGINS_ENV,
    PluginWarning,
    load_plugins,
    plugin_failures,
)
from registry.registry import Entry, Registry, RegistryError

# Attributes of a datamodule that the CLI passes to the model argument of the same name, for a
# datamodule that declares none (a plug-in, say). A datamodule with other dimensions names them
# with `register_datamodule(..., dims=(...))`.
DATA_DIMENSIONS = (
    "num_classes",
    "num_inputs",
    "in_channels",
    "image_size",
    "vocab_size",
    "src_vocab_size",
    "tgt_vocab_size",
    "obs_dim",
    "action_dim",
    "continuous",
)

MODELS = Registry("model", before_read=lambda: load_plugins((MODELS, DATAMODULES)))
DATAMODULES = Registry("datamodule", before_read=lambda: load_plugins((MODELS, DATAMODULES)))


def register_model(
    name: str,
    *,
    family: str,
    data: str | None = None,
    monitor: str = "val/loss",
    mode: str = "min",
    accepts: str | tuple[str, ...] = (),
    test_kwargs: dict[str, Any] | None = None,
    test_data_kwargs: dict[str, Any] | None = None,
):
    """Register a LightningModule under `name`.

    `data` names its default datamodule, `monitor`/`mode` the metric that checkpoints and early
    stopping follow, `accepts` the data kinds it can train on (by default the kind of `data`),
    `test_kwargs` (and `test_data_kwargs`) the small settings with which the contract test
    trains it in seconds.
    """
    return MODELS.register(
        name,
        family=family,
        data=data,
        monitor=monitor,
        mode=mode,
        accepts=(accepts,) if isinstance(accepts, str) else tuple(accepts),
        test_kwargs=test_kwargs or {},
        test_data_kwargs=test_data_kwargs or {},
    )


def register_datamodule(
    name: str,
    *,
    kind: str | None = None,
    dims: tuple[str, ...] = DATA_DIMENSIONS,
    test_kwargs: dict[str, Any] | None = None,
):
    """Register a LightningDataModule under `name`.

    `kind` says what its batches are ("images", "token_windows", "translation_pairs",
    "environments", "tabular", or a new word), so that a model that cannot take them is refused
    before anything is built; `dims` names the attributes (set in `__init__`, properties, or
    computed on first use) that the CLI passes to model arguments of the same names;
    `test_kwargs` keep it small in tests."""
    return DATAMODULES.register(
        name, family="data", kind=kind, dims=tuple(dims), test_kwargs=test_kwargs or {}
    )


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    return MODELS.names(pattern, family)


def get_model(name: str, **kwargs: Any) -> Any:
    return MODELS.build(name, **kwargs)


def list_datamodules(pattern: str | None = None) -> list[str]:
    return DATAMODULES.names(pattern)


def get_datamodule(name: str, **kwargs: Any) -> Any:
    return DATAMODULES.build(name, **kwargs)


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def accepted_kinds(model: Entry) -> tuple[str, ...]:
    """The data kinds a model entry takes: its own `accepts`, else its default data's kind."""
    if model.accepts:
        return model.accepts
    if model.data in DATAMODULES and DATAMODULES.entry(model.data).kind:
        return (DATAMODULES.entry(model.data).kind,)
    return ()


def check_data_fits(model: Entry, data: Entry) -> None:
    """Refuse data whose kind the model cannot take, naming the datamodules it can take.
    Either side without a declared kind is not checked."""
    kinds = accepted_kinds(model)
    if not kinds or data.kind is None or data.kind in kinds:
        return
    fitting = [n for n in DATAMODULES.names() if DATAMODULES.entry(n).kind in kinds]
    raise ConfigurationError(
        f"model {model.name!r} takes {' or '.join(kinds)} data, but datamodule {data.name!r} "
        f"yields {data.kind}. Data it can take: {', '.join(fitting) or 'none registered'} "
        f"(`{command_name()} list --data` shows every datamodule)."
    )


def linked_arguments(model: type) -> list[str]:
    """The model's __init__ arguments (through **kwargs too) named like a dimension that a
    registered datamodule declares: the CLI and the contract test pass them from the data."""
    from jsonargparse import ArgumentParser

    declared = {dim for name in DATAMODULES.names() for dim in DATAMODULES.entry(name).dims}
    parser = ArgumentParser()
    parser.add_class_arguments(model, "model", fail_untyped=False)
    return sorted(declared & set(parser.get_defaults().model.keys()))


def settings(cls: type) -> list[tuple[str, Any, str]]:
    """(argument, default, help) of every __init__ argument of `cls`, as the CLI reads them;
    a class-valued default (an optimizer, say) is shown by its class path."""
    from jsonargparse import ArgumentParser, Namespace

    parser = ArgumentParser()
    parser.add_class_arguments(cls, "cls", fail_untyped=False)
    defaults = parser.get_defaults().cls
    found = []
    for action in parser._actions:  # argparse keeps the help texts only here
        name = action.dest.removeprefix("cls.")
        if name in defaults:
            default = defaults[name]
            if isinstance(default, Namespace):
                default = default.get("class_path", default.as_dict())
            found.append((name, default, (action.help or "").split("(type:")[0].strip()))
    return found


def model_info(name: str, with_params: bool = False) -> dict[str, Any]:
    """The entry as a dict; `with_params` builds the model with its defaults to count its
    parameters (a model that cannot be built that way gets the reason instead of a count)."""
    entry = MODELS.entry(name)
    info: dict[str, Any] = {
        "name": entry.name,
        "class": entry.class_path,
        "family": entry.family,
        "data": entry.data,
        "accepts": ", ".join(accepted_kinds(entry)) or "any",
        "monitor": entry.monitor,
        "mode": entry.mode,
        "summary": entry.summary,
    }
    if with_params:
        try:
            info["parameters"] = count_parameters(entry.cls())
        except Exception as err:  # a plug-in's model may need arguments: report, do not crash
            info["parameters"] = f"cannot build with defaults ({type(err).__name__}: {err})"
    return info


def datamodule_info(name: str) -> dict[str, Any]:
    """A datamodule entry as a dict."""
    entry = DATAMODULES.entry(name)
    return {
        "name": entry.name,
        "class": entry.class_path,
        "kind": entry.kind or "undeclared",
        "models": ", ".join(n for n in MODELS.names() if MODELS.entry(n).data == name) or "-",
        "summary": entry.summary,
    }


__all__ = [
    "DATAMODULES",
    "DATA_DIMENSIONS",
    "ENTRY_POINT_GROUP",
    "MODELS",
    "PLUGINS_ENV",
    "ConfigurationError",
    "Entry",
    "PluginWarning",
    "Registry",
    "RegistryError",
    "accepted_kinds",
    "check_data_fits",
    "command_name",
    "configuration_error_in",
    "count_parameters",
    "datamodule_info",
    "get_datamodule",
    "get_model",
    "linked_arguments",
    "list_datamodules",
    "list_models",
    "load_plugins",
    "model_info",
    "plugin_failures",
    "register_datamodule",
    "register_model",
    "settings",
]
