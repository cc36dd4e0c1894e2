"""A plug-in whose datamodule sets its dimension in __init__ (an instance attribute, not a class
attribute or property): the CLI and the contract test must still pass it to the model."""

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_modules.base import ZooModule, mean_metric
from registry import register_datamodule, register_model


@register_datamodule("instance_dims_data", kind="tabular")
class InstanceDimsData(L.LightningDataModule):
    """Random regression data with `num_features` inputs."""

    def __init__(self, num_features: int = 5, batch_size: int = 16) -> None:
        super().__init__()
        self.num_inputs = num_features  # set here: no class-level attribute to find
        self.batch_size = batch_size

    def _loader(self, seed: int) -> DataLoader:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(64, self.num_inputs, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(2)


@register_model("instance_dims_regressor", family="plugin", data="instance_dims_data")
class InstanceDimsRegressor(ZooModule):
    """A linear regressor whose input width must come from the data."""

    def __init__(self, num_inputs: int = 2, **kwargs: Any) -> None:
        """
        Args:
            num_inputs: input features (from the data).
        """
        super().__init__(**kwargs)
        self.net = torch.nn.Linear(num_inputs, 1)
        self.set_evaluation_metrics(loss=mean_metric())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log_train_loss(loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss = torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        self.evaluation_metrics["val"]["loss"].update(loss, len(batch[0]))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss = torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        self.evaluation_metrics["test"]["loss"].update(loss, len(batch[0]))
