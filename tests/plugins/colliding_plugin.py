"""A broken plug-in: it registers one model, then a name that a built-in model already has.
It must be reported and skipped whole, leaving the built-ins and other plug-ins working."""

from lit_modules.base import ClassifierModule
from registry import register_model


@register_model("half_registered", family="plugin", data="digits")
class HalfRegistered(ClassifierModule):
    """Registered before the collision: must not survive it."""


@register_model("lenet", family="plugin", data="digits")
class NotLeNet(ClassifierModule):
    """Takes a built-in model's name."""
