"""One way to choose the optimizer: any torch optimizer and schedule as model arguments, with
the fit-length schedules stepping exactly as torch's own over the fit, and PPO without the
arguments it would ignore."""

from __future__ import annotations

import pickle

import pytest
import torch

from lit_modules.optimization import (
    CosineAnnealing,
    OneCycle,
    build_lr_scheduler,
    checked_optimizer,
)
from registry import ConfigurationError, get_model


def _trajectory(make_schedule, steps: int = 50) -> list[tuple[float, float]]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    schedule = make_schedule(optimizer)
    seen = []
    for _ in range(steps):
        optimizer.step()
        schedule.step()
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
    return seen


@pytest.mark.parametrize(
    ("ours", "torchs"),
    [
        (OneCycle, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=50)),
        (CosineAnnealing, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50)),
    ],
)
def test_fit_length_schedules_match_torchs_over_the_fit(ours, torchs) -> None:
    """The recipes' onecycle and cosine schedules step exactly as before the migration."""
    built = _trajectory(lambda o: build_lr_scheduler(ours, o, total_steps=lambda: 50)["scheduler"])
    assert built == _trajectory(torchs)
    assert (
        build_lr_scheduler(ours, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]), lambda: 5)[
            "interval"
        ]
        == "step"
    )


def test_other_torch_schedules_step_per_epoch() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    config = build_lr_scheduler(
        lambda o: torch.optim.lr_scheduler.StepLR(o, 3), optimizer, lambda: 99
    )
    assert config["interval"] == "epoch"


@pytest.mark.parametrize(
    ("optimizer", "lr", "message"),
    [
        (torch.optim.SGD, float("nan"), "lr must be a finite number"),
        (lambda p, lr: torch.optim.SGD(p, lr, momentum=-1), 0.1, "Invalid momentum"),
        (lambda p, lr: torch.optim.AdamW(p, lr, weight_decay=-1), 0.1, "weight_decay"),
    ],
)
def test_bad_optimizer_settings_are_refused_when_the_model_is_built(optimizer, lr, message):
    with pytest.raises(ConfigurationError, match=message):
        checked_optimizer(optimizer, lr)
    with pytest.raises(ConfigurationError, match=message):
        get_model("mlp", optimizer=optimizer, lr=lr)


def test_ppo_takes_no_optimizer_arguments_it_would_ignore() -> None:
    hparams = get_model("ppo").hparams
    assert {"lr", "optimizer"} <= set(hparams)
    assert not {"lr_scheduler", "momentum", "weight_decay", "scheduler"} & set(hparams)
    optimizer = get_model("ppo").optimizer_factory([torch.nn.Parameter(torch.zeros(1))], 1e-3)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["eps"] == 1e-5


@pytest.mark.parametrize(
    ("model", "optimizer", "momentum"),
    [("softmax_regression", torch.optim.SGD, 0.9), ("mlp", torch.optim.SGD, 0)],
)
def test_model_defaults_keep_their_optimizers(model, optimizer, momentum) -> None:
    built = get_model(model).optimizer_factory([torch.nn.Parameter(torch.zeros(1))], 0.1)
    assert isinstance(built, optimizer) and built.defaults["momentum"] == momentum


@pytest.mark.parametrize("name", ["ppo", "softmax_regression", "mlp"])
def test_models_with_lambda_defaults_pickle(name) -> None:
    """ddp_spawn sends the model to its processes: the optimizer it keeps must pickle and
    build the same optimizer as the default it came from."""
    model = get_model(name)
    copy = pickle.loads(pickle.dumps(model))
    parameters = [torch.nn.Parameter(torch.zeros(1))]
    built, rebuilt = (m.optimizer_factory(parameters, 0.01) for m in (model, copy))
    assert type(built) is type(rebuilt) and built.defaults == rebuilt.defaults


def test_a_lambda_default_is_recorded_plainly_and_reloads(tmp_path) -> None:
    model = get_model("softmax_regression")
    assert model.hparams.optimizer == {
        "class_path": "torch.optim.sgd.SGD",
        "init_args": model.optimizer_factory.kwargs,
    }
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    saved = torch.load(path, weights_only=True)["hyper_parameters"]  # plain values only
    rebuilt = type(model)(**saved).optimizer_factory([torch.nn.Parameter(torch.zeros(1))], 0.1)
    assert rebuilt.defaults["momentum"] == 0.9
