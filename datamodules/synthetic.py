"""d2l's synthetic linear-regression data (section 3.4): y = Xw + b + noise."""

from __future__ import annotations

import torch

from datamodules.in_memory import InMemoryDataModule, TensorBatches
from registry import ConfigurationError, register_datamodule


@register_datamodule(
    "synthetic_regression", kind="tabular", test_kwargs={"num_train": 64, "num_val": 64}
)
class SyntheticRegressionData(InMemoryDataModule):
    """Gaussian features, a known linear map and Gaussian noise; embedded, no download."""

    def __init__(
        self,
        w: tuple[float, ...] = (2.0, -3.4),
        b: float = 4.2,
        noise: float = 0.01,
        num_train: int = 1000,
        num_val: int = 1000,
        num_test: int = 1000,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        """
        Args:
            w: true weights; their count is the number of features.
            b: true bias.
            noise: standard deviation of the Gaussian noise added to y.
            num_train: training examples.
            num_val: validation examples.
            num_test: test examples.
            batch_size: examples per batch.
            seed: fixes the generated data.
        """
        super().__init__(batch_size=batch_size, seed=seed)
        if min(num_train, num_val, num_test) < 1:
            raise ConfigurationError("num_train, num_val and num_test must all be >= 1")
        self.w = torch.tensor(w, dtype=torch.float32)
        self.b = float(b)
        self.noise = noise
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    @property
    def num_inputs(self) -> int:
        return len(self.w)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        for split, n in self.sizes.items():
            x = torch.randn(n, len(self.w), generator=generator)
            y = x @ self.w + self.b + self.noise * torch.randn(n, generator=generator)
            self.splits[split] = TensorBatches(x, y.unsqueeze(1))
