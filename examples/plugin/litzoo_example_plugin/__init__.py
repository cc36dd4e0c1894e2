"""An external litzoo plug-in: importing this module registers `example_logreg`.

litzoo imports it through the `litzoo.plugins` entry point declared in this package's
pyproject.toml, so the model shows in `python cli.py list` and in litzoo's contract test
without any change to litzoo itself."""

from typing import Any

from torch import nn

from lit_modules.base import ClassifierModule
from registry import register_model


@register_model("example_logreg", family="plugin", data="digits", monitor="val/acc", mode="max")
class ExampleLogisticRegression(ClassifierModule):
    """Logistic regression on 8x8 digits, registered from outside litzoo."""

    def __init__(
        self, num_inputs: int = 64, num_classes: int = 10, lr: float = 0.5, **kwargs: Any
    ) -> None:
        """
        Args:
            num_inputs: flattened input size.
            num_classes: number of classes.
            lr: learning rate.
        """
        super().__init__(num_classes=num_classes, lr=lr, **kwargs)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))
