"""d2l chapters 3 to 5: linear regression, softmax regression and the multilayer perceptron."""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lit_modules.base import (
    ClassifierModule,
    ZooModule,
    check_positive,
    check_probability,
    mean_metric,
)
from lit_modules.optimization import OptimizerFactory
from registry import register_model


@register_model(
    "linear_regression",
    family="linear",
    data="synthetic_regression",
    monitor="val/loss",
    mode="min",
)
class LinearRegression(ZooModule):
    """Linear regression trained by minibatch SGD on squared error (d2l 3.5)."""

    def __init__(self, num_inputs: int = 2, lr: float = 0.03, **kwargs: Any) -> None:
        """
        Args:
            num_inputs: number of input features (the CLI takes it from the data).
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        check_positive(num_inputs=num_inputs)
        self.net = nn.Linear(num_inputs, 1)
        nn.init.normal_(self.net.weight, std=0.01)
        nn.init.zeros_(self.net.bias)
        self.set_evaluation_metrics(loss=mean_metric())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        loss = self._loss(batch)
        self.log_train_loss(loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.evaluation_metrics["val"]["loss"].update(self._loss(batch), len(batch[0]))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.evaluation_metrics["test"]["loss"].update(self._loss(batch), len(batch[0]))

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self(batch[0])


def mlp(
    num_inputs: int, hidden_sizes: list[int], num_outputs: int, dropout: float = 0.0
) -> nn.Sequential:
    """Flattened inputs, a ReLU layer per hidden size (each followed by dropout, if any), and a
    linear output layer. With no hidden layer it is softmax regression's one linear layer."""
    widths = [num_inputs, *hidden_sizes]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-1], num_outputs))
    return nn.Sequential(*layers)


@register_model(
    "softmax_regression", family="linear", data="fashion_mnist", monitor="val/acc", mode="max"
)
class SoftmaxRegression(ClassifierModule):
    """Softmax regression: an MLP with no hidden layer, one linear layer on flattened pixels (d2l 4.5).

    The defaults add momentum 0.9 to d2l's SGD (0.83 val accuracy after one epoch instead of
    0.80); configs/linear/softmax_regression.yaml is d2l's plain recipe."""

    def __init__(
        self,
        num_inputs: int = 784,
        lr: float = 0.1,
        optimizer: OptimizerFactory = lambda params, lr: torch.optim.SGD(params, lr, momentum=0.9),
        **kwargs: Any,
    ) -> None:
        """
        Args:
            num_inputs: flattened input size (the CLI takes it from the data).
            lr: learning rate.
            optimizer: SGD with momentum 0.9.
        """
        super().__init__(lr=lr, optimizer=optimizer, **kwargs)
        check_positive(num_inputs=num_inputs)
        self.net = mlp(num_inputs, [], self.hparams.num_classes)
        output = self.net[-1]
        nn.init.normal_(output.weight, std=0.01)  # d2l 4.4's initialization
        nn.init.zeros_(output.bias)


@register_model("mlp", family="linear", data="fashion_mnist", monitor="val/acc", mode="max")
class MLP(ClassifierModule):
    """Multilayer perceptron with ReLU hidden layers and optional dropout (d2l 5.1-5.6)."""

    def __init__(
        self,
        num_inputs: int = 784,
        hidden_sizes: list[int] | None = None,
        dropout: float = 0.0,
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            num_inputs: flattened input size (the CLI takes it from the data).
            hidden_sizes: width of each hidden layer; None means d2l's single layer of 256.
            dropout: dropout probability after each hidden layer.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        hidden_sizes = [256] if hidden_sizes is None else list(hidden_sizes)
        check_positive(
            num_inputs=num_inputs, **{f"hidden_sizes[{i}]": h for i, h in enumerate(hidden_sizes)}
        )
        check_probability(dropout=dropout)
        self.net = mlp(num_inputs, hidden_sizes, self.hparams.num_classes, dropout)
