"""LightningModules, one module per model family. Importing this package registers every
built-in model."""

from lit_modules import cnn, ebm, linear, ppo, rnn_lm, seq2seq, vit  # noqa: F401  (registration side effect)
