"""How a model chooses its optimizer and learning-rate schedule: two `__init__` arguments,
`optimizer` and `lr_scheduler`, that take any torch optimizer and schedule (LightningCLI's
dependency-injection style), recorded with the other hyperparameters.

    --model.optimizer AdamW --model.optimizer.weight_decay 0.05 --model.lr 0.01
    --model.lr_scheduler lit_modules.optimization.OneCycle

`optimizer` is called with the trainable parameters and `lr` (every torch optimizer takes the
learning rate as its second argument), so `lr` stays one hyperparameter per model with the
model's own default. `lr_scheduler` is called with the optimizer. Torch's schedules step once per
epoch, as in Lightning; the schedules below step once per optimizer step: `OneCycle` and
`CosineAnnealing` span the whole fit (their length taken from the trainer), `InverseSqrt` is the
Transformer paper's warm-up and decay.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable
from torch import nn
from torch.optim import Optimizer

from registry.checks import ConfigurationError

OptimizerFactory = Callable[[Iterable[nn.Parameter], float], Optimizer]
"""An optimizer class (torch.optim.SGD, AdamW, ...) or function called as (parameters, lr)."""

__all__ = [
    "CosineAnnealing",
    "InverseSqrt",
    "LRSchedulerCallable",
    "OneCycle",
    "OptimizerFactory",
    "OptimizerSpec",
    "PerStepSchedule",
    "build_lr_scheduler",
    "build_optimizer",
    "checked_optimizer",
    "fit_steps",
]

_FIT_STEPS: ContextVar[Callable[[], int] | None] = ContextVar("litzoo_fit_steps", default=None)


@contextlib.contextmanager
def fit_steps(total: Callable[[], int]) -> Iterator[None]:
    """Within this block, fit-length schedules built without `total_steps` span `total()`
    steps (asked only by a schedule that needs it)."""
    token = _FIT_STEPS.set(total)
    try:
        yield
    finally:
        _FIT_STEPS.reset(token)


class PerStepSchedule:
    """Marks a schedule that steps once per optimizer step (Lightning's "step" interval)."""

    @staticmethod
    def length(total_steps: int | None) -> int:
        """`total_steps`, or the fit's optimizer steps when None."""
        fit = _FIT_STEPS.get()
        total = total_steps if total_steps is not None else fit() if fit else None
        if total is None:
            raise ConfigurationError(
                "this schedule spans the fit: build it inside configure_optimizers "
                "(ZooModule does) or give total_steps"
            )
        if total < 1:
            raise ConfigurationError(f"a schedule needs total_steps >= 1, got {total}")
        return total


class OneCycle(PerStepSchedule, torch.optim.lr_scheduler.OneCycleLR):
    """torch's one-cycle policy over the whole fit, peaking at the optimizer's learning rate
    (`lr`); momentum (SGD) or beta1 (Adam, AdamW) cycles the other way, as in torch."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        """
        Args:
            optimizer: the optimizer whose learning rate it sets.
            total_steps: length of the cycle; None means the fit's optimizer steps.
            pct_start: share of the cycle spent raising the learning rate.
            anneal_strategy: cos or linear.
            cycle_momentum: cycle momentum (beta1) inversely to the learning rate.
            base_momentum: lowest momentum, at the peak learning rate.
            max_momentum: highest momentum, at the start and the end.
            div_factor: the starting learning rate is lr / div_factor.
            final_div_factor: the final learning rate is lr / (div_factor * final_div_factor).
        """
        super().__init__(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=self.length(total_steps),
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
        )


class CosineAnnealing(PerStepSchedule, torch.optim.lr_scheduler.CosineAnnealingLR):
    """torch's cosine annealing from the optimizer's learning rate to `eta_min` over the whole fit."""

    def __init__(
        self, optimizer: Optimizer, total_steps: int | None = None, eta_min: float = 0.0
    ) -> None:
        """
        Args:
            optimizer: the optimizer whose learning rate it sets.
            total_steps: steps to reach eta_min; None means the fit's optimizer steps.
            eta_min: the final learning rate.
        """
        super().__init__(optimizer, T_max=self.length(total_steps), eta_min=eta_min)


class InverseSqrt(PerStepSchedule, torch.optim.lr_scheduler.LambdaLR):
    """The Transformer paper's schedule: a linear warm-up to the optimizer's learning rate over
    `warmup_steps`, then lr * sqrt(warmup_steps / step). It needs no planned length, so a run
    stopped at any time has followed the same schedule."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 4000) -> None:
        """
        Args:
            optimizer: the optimizer whose learning rate it sets.
            warmup_steps: warm-up length in optimizer steps.
        """
        if warmup_steps < 1:
            raise ConfigurationError(f"warmup_steps must be >= 1, got {warmup_steps}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        return min((step + 1) / self.warmup_steps, (self.warmup_steps / (step + 1)) ** 0.5)


def build_optimizer(
    factory: OptimizerFactory, parameters: Iterable[nn.Parameter], lr: float
) -> Optimizer:
    """The optimizer over the parameters that require gradients."""
    return factory([p for p in parameters if p.requires_grad], lr)


def build_lr_scheduler(
    factory: LRSchedulerCallable, optimizer: Optimizer, total_steps: Callable[[], int]
) -> dict[str, Any]:
    """Lightning's scheduler configuration: litzoo's schedules step every optimizer step (the
    fit-length ones over `total_steps()`), others every epoch (and on their monitor, for
    ReduceLROnPlateau)."""
    with fit_steps(total_steps):
        scheduler = factory(optimizer)
    config: dict[str, Any] = {"scheduler": scheduler}
    config["interval"] = "step" if isinstance(scheduler, PerStepSchedule) else "epoch"
    if getattr(scheduler, "monitor", None):
        config["monitor"] = scheduler.monitor
    return config


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer class and its arguments but lr: a factory that pickles (a lambda default
    does not), so a model can be sent to other processes (ddp_spawn)."""

    cls: type[Optimizer]
    kwargs: dict[str, Any]

    def __call__(self, parameters: Iterable[nn.Parameter], lr: float) -> Optimizer:
        return self.cls(parameters, lr, **self.kwargs)

    def record(self) -> dict[str, Any]:
        """As LightningCLI records an optimizer: plain values a checkpoint can hold."""
        path = f"{self.cls.__module__}.{self.cls.__qualname__}"
        return {"class_path": path, "init_args": dict(self.kwargs)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OptimizerSpec:
        module, _, name = record["class_path"].rpartition(".")
        return cls(getattr(importlib.import_module(module), name), record.get("init_args", {}))


def checked_optimizer(
    optimizer: OptimizerFactory, lr: float, lr_scheduler: LRSchedulerCallable | None = None
) -> OptimizerFactory:
    """Build the optimizer (and schedule) once on a stand-in parameter, so that a bad setting
    (a negative lr, weight decay or momentum, an unknown argument) is refused when the model is
    built, not in the middle of `fit`. Returns a factory that pickles: `optimizer` itself, or
    the class and arguments it built (torch optimizers keep every argument in `defaults`)."""
    if isinstance(optimizer, dict):  # as recorded in a checkpoint's hyperparameters
        optimizer = OptimizerSpec.from_record(optimizer)
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ConfigurationError(f"lr must be a finite number > 0, got {lr}")
    try:
        stand_in = build_optimizer(optimizer, [nn.Parameter(torch.zeros(1))], lr)
        if lr_scheduler is not None:
            build_lr_scheduler(lr_scheduler, stand_in, total_steps=lambda: 10)
    except (ValueError, TypeError) as err:
        raise ConfigurationError(f"invalid optimizer or lr_scheduler setting: {err}") from err
    try:
        pickle.dumps(optimizer)
        return optimizer
    except (pickle.PicklingError, AttributeError, TypeError):
        arguments = {k: v for k, v in stand_in.defaults.items() if k != "lr"}
        return OptimizerSpec(type(stand_in), arguments)
