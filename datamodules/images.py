"""Image classification data held in memory as uint8 tensors: Fashion-MNIST and MNIST from
their IDX files, and scikit-learn's bundled 8x8 digits (embedded, no download)."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.download import DataError, RemoteFile, fetch_all
from datamodules.in_memory import InMemoryDataModule, TensorBatches, random_split_indices
from datamodules.seeding import derive_seed, run_seed
from registry import ConfigurationError, register_datamodule

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@functools.lru_cache(maxsize=8)
def read_idx(path: Path) -> torch.Tensor:
    """Parse an IDX file (optionally gzipped) into a tensor; a malformed file is a DataError."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(
            f"{path} cannot be read as IDX data ({err}); delete it to fetch again"
        ) from err
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    body = 4 + 4 * ndim
    if len(raw) - body != int(np.prod(shape)) * dtype.itemsize:
        raise DataError(f"{path} is truncated: header says shape {shape}, data does not match")
    array = np.frombuffer(raw, dtype, offset=body).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


class ImageClassificationData(InMemoryDataModule):
    """Images as uint8 NCHW tensors in memory, scaled (and optionally resized) per batch on
    the device after transfer. The val split is carved from train with a fixed seed; the
    official test set serves `test` and `predict` only."""

    class_names: tuple[str, ...] = ()
    image_shape: tuple[int, int, int] = (1, 28, 28)
    pixel_max: float = 255.0

    def __init__(
        self,
        batch_size: int = 256,
        val_size: int = 5000,
        resize: int | None = None,
        seed: int = 0,
        predict_images: str | None = None,
        augment: bool = False,
        max_shift: int = 2,
    ) -> None:
        """
        Args:
            batch_size: images per batch.
            val_size: images carved from the training set (fixed by `seed`) for validation.
            resize: side length to resize images to (d2l's recipes use 96 or 224); None keeps them.
            seed: fixes the train/val split.
            predict_images: a .npy file of images, (N, H, W) or (N, C, H, W), uint8 in 0-255 or
                float in 0-1, for `predict`; None predicts the test set.
            augment: during training, shift each image by up to `max_shift` pixels and flip half
                of them left-right, batched on the device.
            max_shift: largest shift in pixels when augmenting; 0 flips only, which costs less
                (lenet_fast's 15 epochs scored higher without shifts).
        """
        super().__init__(batch_size=batch_size, seed=seed)
        self.predict_images = predict_images
        self.augment = augment
        if not 0 <= max_shift < min(self.image_shape[1:]):
            raise ConfigurationError(
                f"max_shift must be from 0 (flips only) to less than the image side "
                f"{min(self.image_shape[1:])} pixels, got {max_shift}"
            )
        self.max_shift = max_shift
        if val_size < 1:
            raise ConfigurationError(f"val_size must be >= 1, got {val_size}")
        if resize is not None and resize < 1:
            raise ConfigurationError(f"resize must be a positive side length or None, got {resize}")
        self.val_size = val_size
        self.resize = resize

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.image_shape
        return (channels, self.resize, self.resize) if self.resize else (channels, height, width)

    @property
    def image_size(self) -> int:
        """Side of the (square) images models receive, after any resize."""
        return self.input_shape[-1]

    @property
    def in_channels(self) -> int:
        return self.image_shape[0]

    @property
    def num_inputs(self) -> int:
        """Length of a flattened image, for models that take vectors."""
        channels, height, width = self.input_shape
        return channels * height * width

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(train images, train labels, test images, test labels), images uint8 NCHW."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        x_train, y_train, x_test, y_test = self.load()
        if self.val_size >= len(x_train):
            raise ConfigurationError(
                f"val_size={self.val_size} leaves no training images out of {len(x_train)}"
            )
        train_idx, val_idx = random_split_indices(
            len(x_train), [len(x_train) - self.val_size, self.val_size], self.seed
        )
        self.splits = {
            "train": TensorBatches(x_train[train_idx], y_train[train_idx]),
            "val": TensorBatches(x_train[val_idx], y_train[val_idx]),
            "test": TensorBatches(x_test, y_test),
        }
        if self.predict_images:
            images = self.load_predict_images(Path(self.predict_images))
            self.splits["predict"] = TensorBatches(images, torch.full((len(images),), -1))

    def load_predict_images(self, path: Path) -> torch.Tensor:
        """User images as uint8 NCHW on this dataset's pixel scale; shape errors say what fits."""
        try:
            array = np.load(path)
        except (OSError, ValueError) as err:
            raise DataError(
                f"--data.predict_images {path}: not a readable .npy file ({err})"
            ) from err
        if array.ndim == 3:
            array = array[:, None]
        channels, height, width = self.image_shape
        if array.ndim != 4 or array.shape[1:] != (channels, height, width):
            raise DataError(
                f"--data.predict_images {path}: shape {array.shape}, expected (N, {height}, {width}) or "
                f"(N, {channels}, {height}, {width}) like {type(self).__name__}'s images"
            )
        if np.issubdtype(array.dtype, np.floating):
            array = np.rint(np.clip(array, 0.0, 1.0) * self.pixel_max)
        return torch.from_numpy(array.astype(np.uint8))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        images = images.float().div_(self.pixel_max)
        if self.augment and self.trainer is not None and self.trainer.training:
            images = shift_and_flip(images, self.max_shift, self._augmentation_generator())
        if self.resize:
            images = F.interpolate(images, size=(self.resize, self.resize), mode="bilinear")
        return images, labels

    def _augmentation_generator(self) -> torch.Generator:
        """The generator of the training batch being prepared, seeded by its place in the fit
        (run seed, epoch, batch of the epoch, rank), so a resumed fit augments it the same way."""
        trainer = self.trainer
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # not yet counted
        seed = derive_seed(run_seed(), "augment", trainer.current_epoch, batch, trainer.global_rank)
        return torch.Generator().manual_seed(seed)


def shift_and_flip(
    images: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random translation by up to `max_shift` pixels (zero fill) and a left-right flip of a
    random half, different for every image but computed for the whole batch at once. The few
    random numbers are drawn on the CPU from `generator` (the global one if None) and moved to
    the images' device, so the result does not depend on the device."""
    n, _, height, width = images.shape
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    if max_shift == 0:  # flips alone need no resampling grid
        return torch.where(flip[:, None, None, None], images.flip(-1), images)
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0)
    theta[:, 1, 1] = 1.0
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    shift = shift.to(images.device, torch.float32)
    theta[:, 0, 2] = shift[:, 0] * 2 / width
    theta[:, 1, 2] = shift[:, 1] * 2 / height
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


class IDXImageData(ImageClassificationData):
    """Fashion-MNIST-style datasets: four gzipped IDX files fetched through the download layer."""

    files: tuple[RemoteFile, RemoteFile, RemoteFile, RemoteFile]  # train x, train y, test x, y

    def prepare_data(self) -> None:
        fetch_all(self.files)

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x_train, y_train, x_test, y_test = (read_idx(p) for p in fetch_all(self.files))
        return x_train.unsqueeze(1), y_train.long(), x_test.unsqueeze(1), y_test.long()


def _idx_files(dataset: str, base_url: str, sha256: dict[str, str]) -> tuple[RemoteFile, ...]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return tuple(RemoteFile(dataset, name, base_url + name, sha256[name]) for name in names)


@register_datamodule(
    "fashion_mnist", kind="images", test_kwargs={"batch_size": 32, "val_size": 256}
)
class FashionMNISTData(IDXImageData):
    """Fashion-MNIST (Zalando): 60k/10k 28x28 grey images of 10 clothing classes."""

    class_names = (
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    )
    files = _idx_files(
        "fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    )


@register_datamodule("mnist", kind="images", test_kwargs={"batch_size": 32, "val_size": 256})
class MNISTData(IDXImageData):
    """MNIST handwritten digits (LeCun, Cortes & Burges): 60k/10k 28x28 grey images."""

    class_names = tuple(str(d) for d in range(10))
    files = _idx_files(
        "mnist",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    )


@register_datamodule("digits", kind="images", test_kwargs={"batch_size": 32})
class DigitsData(ImageClassificationData):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images): embedded, no download.
    A fixed-seed test split is held out first, then val is carved from the rest."""

    class_names = tuple(str(d) for d in range(10))
    image_shape = (1, 8, 8)
    pixel_max = 16.0

    def __init__(
        self, batch_size: int = 64, val_size: int = 300, test_size: int = 300, **kwargs: Any
    ) -> None:
        """
        Args:
            batch_size: images per batch.
            val_size: images held out for validation.
            test_size: images held out for the test split.
        """
        super().__init__(batch_size=batch_size, val_size=val_size, **kwargs)
        self.test_size = test_size

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        rest, test = random_split_indices(
            len(images), [len(images) - self.test_size, self.test_size], self.seed + 1
        )
        return images[rest], labels[rest], images[test], labels[test]
