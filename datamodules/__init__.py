"""LightningDataModules, one module per data domain, plus the shared download layer.
Importing this package registers every built-in datamodule."""

from datamodules import gym, images, synthetic, text, translation  # noqa: F401  (registration side effect)
