"""The CNN family of d2l chapters 7 and 8: shared blocks, the classic and the modern networks."""

from lit_modules.cnn import classic, modern  # noqa: F401  (registration side effect)
