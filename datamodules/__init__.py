"""LightningDataModules, one module per data domain, plus the shared download layer.
Importing this package registers every built-in datamodule."""

from datamodules import images, synthetic  # noqa: F401  (registration side effect)
