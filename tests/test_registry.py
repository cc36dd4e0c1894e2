"""Registry behaviour: names, duplicates, unknown names, patterns, info and plug-ins."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

import datamodules  # noqa: F401
import lit_modules  # noqa: F401
from lit_modules.cnn.classic import LeNet
from registry import (
    DATAMODULES,
    MODELS,
    PLUGINS_ENV,
    ConfigurationError,
    PluginWarning,
    Registry,
    RegistryError,
    accepted_kinds,
    check_data_fits,
    count_parameters,
    get_model,
    list_models,
    model_info,
    plugin_failures,
    plugins,
    register_model,
)


class First:
    """First definition."""


class Second:
    """Second definition."""


def test_duplicate_name_names_both_definitions() -> None:
    registry = Registry("model")
    registry.register("thing")(First)
    with pytest.raises(RegistryError) as err:
        registry.register("thing")(Second)
    message = str(err.value)
    assert "test_registry.First" in message and "test_registry.Second" in message
    assert registry.entry("thing").cls is First


def test_reregistering_the_same_class_is_allowed() -> None:
    registry = Registry("model")
    registry.register("thing")(First)
    registry.register("thing")(First)
    assert registry.names() == ["thing"]


@pytest.mark.parametrize("bad", ["LeNet", "le-net", "", "lenet!"])
def test_names_must_be_lowercase_identifiers(bad: str) -> None:
    with pytest.raises(RegistryError, match="lowercase"):
        Registry("model").register(bad)(First)


@pytest.mark.parametrize(("argv0", "command"), [("cli.py", "python cli.py"), ("litzoo", "litzoo")])
def test_unknown_name_suggests_the_closest_and_how_to_list(monkeypatch, argv0, command) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])  # messages name the command as it was invoked
    with pytest.raises(RegistryError) as err:
        MODELS.entry("softmax_regresion")
    assert "softmax_regression" in str(err.value)
    assert f"`{command} list`" in str(err.value)


def test_patterns_and_families_filter_sorted_names() -> None:
    assert list_models("*_regression") == ["linear_regression", "softmax_regression"]
    linear = list_models(family="linear")
    assert linear == sorted(linear)
    assert {"linear_regression", "softmax_regression", "mlp"} <= set(linear)
    assert list_models(family="no_such_family") == []


def test_get_model_passes_hyperparameters() -> None:
    model = get_model("mlp", hidden_sizes=[8, 4], dropout=0.1, lr=0.2)
    assert model.hparams.hidden_sizes == [8, 4]
    assert model.hparams.lr == 0.2
    # the base's default travels with them, recorded as plain values
    assert model.hparams.optimizer == {"class_path": "torch.optim.sgd.SGD", "init_args": {}}


def test_model_info_describes_the_entry() -> None:
    info = model_info("softmax_regression", with_params=True)
    assert info["class"] == "lit_modules.linear.SoftmaxRegression"
    assert (info["family"], info["data"], info["monitor"], info["mode"]) == (
        "linear",
        "fashion_mnist",
        "val/acc",
        "max",
    )
    assert info["parameters"] == count_parameters(get_model("softmax_regression")) == 7850
    assert info["summary"].startswith("Softmax regression")


def test_entry_point_plugin_is_listed() -> None:
    """examples/plugin is installed (make install, .ci/run) and registers through the entry point."""
    assert "example_logreg" in list_models(family="plugin")


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Plug-in loading as in a new process, with the registries and the loader's bookkeeping
    (the modules tried, the failures) put back afterwards."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))
    for registry in (MODELS, DATAMODULES):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(plugins, "_loaded", set(plugins._loaded))
    monkeypatch.setattr(plugins, "_failed", {})
    yield
    for module in ("dims_plugin", "required_arg_plugin", "colliding_plugin"):
        sys.modules.pop(module, None)


def test_env_plugin_is_imported_on_first_read(fresh_plugins, monkeypatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "dims_plugin")
    assert "instance_dims_regressor" in list_models()
    assert MODELS.entry("instance_dims_regressor").family == "plugin"
    assert DATAMODULES.entry("instance_dims_data").kind == "tabular"
    assert "dims_plugin" in plugins._loaded


def test_env_plugin_test_left_no_trace() -> None:
    """The fixture restored the loader: the previous test's module is not marked as loaded."""
    assert "dims_plugin" not in plugins._loaded
    assert "instance_dims_regressor" not in MODELS.registered()


def test_a_bad_plugin_is_reported_and_the_rest_keeps_working(fresh_plugins, monkeypatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "no_such_litzoo_plugin,colliding_plugin,required_arg_plugin")
    with pytest.warns(PluginWarning) as warned:
        names = list_models()
    assert "needs_width" in names  # the good plug-in after the bad ones
    assert "half_registered" not in names  # the colliding plug-in is removed whole
    assert MODELS.entry("lenet").cls is LeNet
    failures = plugin_failures()
    assert len(failures) == len(warned) == 2
    assert "no_such_litzoo_plugin" in failures[0] and PLUGINS_ENV in failures[0]
    assert (
        "'lenet' is registered twice" in failures[1]
        and "lit_modules.cnn.classic.LeNet" in failures[1]
    )


def test_entry_points_are_scanned_once(monkeypatch) -> None:
    calls = []
    real = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points", lambda **kw: calls.append(kw) or real(**kw))
    plugins._entry_point_modules.cache_clear()
    try:
        for _ in range(5):
            MODELS.entry("lenet")
            list_models()
    finally:
        plugins._entry_point_modules.cache_clear()
    assert len(calls) == 1


def test_a_model_with_a_required_argument_is_described_not_built(
    fresh_plugins, monkeypatch
) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "required_arg_plugin")
    info = model_info("needs_width", with_params=True)
    assert info["parameters"].startswith("cannot build with defaults (TypeError")
    assert "width" in info["parameters"]


def test_data_kinds_refuse_data_a_model_cannot_take() -> None:
    assert accepted_kinds(MODELS.entry("lenet")) == ("images",)
    assert accepted_kinds(MODELS.entry("ppo")) == ("environments",)
    check_data_fits(MODELS.entry("mlp"), DATAMODULES.entry("digits"))  # images: fine
    with pytest.raises(ConfigurationError) as err:
        check_data_fits(MODELS.entry("gru"), DATAMODULES.entry("fashion_mnist"))
    assert "takes token_windows data" in str(err.value) and "time_machine" in str(err.value)
    with pytest.raises(ConfigurationError, match="digits, fashion_mnist, mnist"):
        check_data_fits(MODELS.entry("lenet"), DATAMODULES.entry("time_machine"))


def test_register_model_rejects_a_bad_mode() -> None:
    with pytest.raises(RegistryError, match="mode"):
        register_model("bad_mode_model", family="x", data="digits", mode="maximum")(First)
