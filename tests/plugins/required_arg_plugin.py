"""A plug-in model with a required __init__ argument: it cannot be built with its defaults, so
`list` must report it instead of crashing, and the contract test builds it from test_kwargs."""

from typing import Any

from torch import nn

from lit_modules.base import ClassifierModule
from registry import register_model


@register_model(
    "needs_width", family="plugin", data="digits", monitor="val/acc", mode="max",
    test_kwargs={"width": 4},
)  # fmt: skip
class NeedsWidth(ClassifierModule):
    """An MLP on digits whose hidden width has no default."""

    def __init__(self, width: int, num_inputs: int = 64, num_classes: int = 10, **kwargs: Any):
        """
        Args:
            width: hidden units (required).
            num_inputs: flattened input size (from the data).
            num_classes: classes (from the data).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(num_inputs, width), nn.ReLU(), nn.Linear(width, num_classes)
        )
