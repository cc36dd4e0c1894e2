"""The CNN family of d2l chapters 7 and 8: the base every CNN subclasses and the stage builder
(base.py), shared layers (blocks.py), the classic networks and the modern ones."""

from lit_modules.cnn import classic, modern  # noqa: F401  (registration side effect)
