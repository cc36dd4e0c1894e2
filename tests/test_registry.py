"""Registry behaviour: names, duplicates, unknown names, patterns, info and plug-ins."""

from __future__ import annotations

import sys
import textwrap

import pytest

import datamodules  # noqa: F401
import lit_modules  # noqa: F401
from registry import (
    MODELS,
    PLUGINS_ENV,
    PluginError,
    Registry,
    RegistryError,
    count_parameters,
    get_model,
    list_models,
    model_info,
    register_model,
)
from registry.plugins import load_plugins


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


def test_unknown_name_suggests_the_closest_and_how_to_list() -> None:
    with pytest.raises(RegistryError) as err:
        MODELS.entry("softmax_regresion")
    assert "softmax_regression" in str(err.value)
    assert "python cli.py list" in str(err.value)


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
    assert model.hparams.optimizer == "sgd"  # the base's default travels with the hparams


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


def test_env_plugin_is_imported_on_first_read(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_zoo_plugin.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            from lit_modules.base import ClassifierModule
            from registry import register_model

            @register_model("env_plugin_model", family="plugin", data="digits", monitor="val/acc", mode="max")
            class EnvPluginModel(ClassifierModule):
                def __init__(self, num_classes: int = 10, **kwargs):
                    super().__init__(num_classes=num_classes, **kwargs)
                    self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setenv(PLUGINS_ENV, "my_zoo_plugin")
    assert "env_plugin_model" in list_models()
    assert MODELS.entry("env_plugin_model").family == "plugin"
    sys.modules.pop("my_zoo_plugin", None)


def test_broken_plugin_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "no_such_litzoo_plugin_module")
    with pytest.raises(PluginError) as err:
        load_plugins()
    assert "no_such_litzoo_plugin_module" in str(err.value)
    assert PLUGINS_ENV in str(err.value)


def test_register_model_rejects_a_bad_mode() -> None:
    with pytest.raises(RegistryError, match="mode"):
        register_model("bad_mode_model", family="x", data="digits", mode="maximum")(First)
