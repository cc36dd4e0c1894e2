"""The energy-based model: the replay buffer's capacity, restart fraction and checkpoint round
trip, the Langevin sampler on a toy energy whose minimum is known, the chapter's loss on a
hand-computed case, exact resume of the chains, the padded [-1, 1] image data with its
out-of-distribution test set, and the pictures and judged metrics. Training in seconds,
gradients and checkpoint reload are covered by the registry contract."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from conftest import quiet_trainer, run_cli
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAUROC

from callbacks import LangevinPictures
from datamodules.images import DigitsData, MNISTData
from lit_modules.base import ConfigurationError
from lit_modules.ebm import (
    EBM,
    ReplayBuffer,
    _as_probability,
    contrastive_divergence_loss,
    langevin_sample,
)

SMALL = {"channels": [4, 4, 4, 4], "hidden": 8, "langevin_steps": 3, "buffer_size": 32}
RAMP = {**SMALL, "langevin_steps_final": 6}


class QuadraticScore(nn.Module):
    """s(x) = -||x - minimum||^2 per image: the energy's minimum is known. Records the mode it
    ran in; `minimum` is a parameter so that gradients on parameters can be checked."""

    def __init__(self, minimum: float) -> None:
        super().__init__()
        self.minimum = nn.Parameter(torch.tensor(minimum))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return -(x - self.minimum).pow(2).flatten(1).sum(1)


# --- replay buffer ---------------------------------------------------------------------


def test_buffer_keeps_its_capacity_and_the_newest_images() -> None:
    buffer = ReplayBuffer(capacity=10, image_shape=(1, 2, 2), seed=0)
    for first in (0, 4, 8):  # 12 images with values 0..11, four at a time
        buffer.push(torch.arange(first, first + 4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2))
    assert buffer.size == 10 and buffer.images.shape == (10, 1, 2, 2)
    assert sorted(buffer.images[:, 0, 0, 0].tolist()) == list(range(2, 12))  # 0 and 1 dropped
    buffer.push(torch.full((25, 1, 2, 2), 7.0))  # more than the capacity: the last ten stay
    assert buffer.size == 10 and (buffer.images == 7.0).all()


def test_buffer_restarts_its_fraction_of_chains_from_noise() -> None:
    buffer = ReplayBuffer(capacity=100, image_shape=(1, 4, 4), restart_fraction=0.05, seed=0)
    first = buffer.sample(64)  # an empty buffer: every chain starts from noise
    assert first.min() >= -1 and first.max() <= 1 and first.std() > 0.4
    buffer.push(torch.full((100, 1, 4, 4), 0.25))
    starts = buffer.sample(40_000)
    restarted = (starts != 0.25).flatten(1).any(1).float().mean().item()
    assert restarted == pytest.approx(0.05, abs=0.005)  # binomial std is 0.001


def test_buffer_survives_a_state_round_trip() -> None:
    buffer = ReplayBuffer(capacity=16, image_shape=(1, 3, 3), seed=1)
    buffer.push(torch.rand(12, 1, 3, 3))
    buffer.sample(8)  # the generator has moved on from its seed
    twin = ReplayBuffer(capacity=16, image_shape=(1, 3, 3), seed=99)
    twin.load_chains_state(buffer.chains_state())
    assert (twin.size, twin.next) == (12, 12)
    torch.testing.assert_close(twin.sample(8), buffer.sample(8), rtol=0, atol=0)
    buffer.push(torch.rand(8, 1, 3, 3))  # wraps around the ring
    twin.load_chains_state(buffer.chains_state())
    torch.testing.assert_close(twin.images, buffer.images, rtol=0, atol=0)
    with pytest.raises(ConfigurationError, match="capacity 4"):
        ReplayBuffer(capacity=4, image_shape=(1, 3, 3)).load_chains_state(buffer.chains_state())


# --- Langevin sampler ------------------------------------------------------------------


def test_sampler_lowers_the_energy_to_its_known_minimum() -> None:
    score = QuadraticScore(minimum=0.3)
    start = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    samples, _ = langevin_sample(score, start, 60, 0.1, 0.005, None, generator=generator)
    assert -score(samples).mean() < 0.01 * -score(start).mean()
    torch.testing.assert_close(samples, torch.full_like(samples, 0.3), rtol=0, atol=0.02)
    # the chapter's clipped steps get there too, and the clamp holds a minimum outside [-1, 1]
    samples, _ = langevin_sample(QuadraticScore(1.5), start, 60, 10.0, 0.005, 0.03)
    assert (samples == 1.0).all()


def test_sampler_leaves_no_gradient_on_parameters_and_restores_modes() -> None:
    score = QuadraticScore(minimum=0.0)
    inner = nn.Sequential(nn.Dropout(0.5))
    score.inner = inner.eval()  # a submodule in its own mode keeps it
    score.train()
    inner.eval()
    start = torch.rand(4, 1, 4, 4)
    langevin_sample(score, start, 5, 0.1, 0.005, 0.03)
    assert score.minimum.grad is None
    assert set(score.modes) == {False}  # sampled in eval mode
    assert score.training and not inner.training
    score.minimum.grad = torch.tensor(2.0)  # a training step's gradient is left alone
    langevin_sample(score, start, 5, 0.1, 0.005, 0.03)
    assert score.minimum.grad.item() == 2.0


def test_sampler_runs_under_inference_mode_and_returns_snapshots() -> None:
    score = QuadraticScore(minimum=0.0)
    with torch.inference_mode():
        start = torch.rand(4, 1, 4, 4)
        samples, snapshots = langevin_sample(score, start, 10, 0.1, 0.0, None, snapshot_every=4)
    assert len(snapshots) == 4  # steps 0, 4, 8 and the last, 10
    torch.testing.assert_close(snapshots[0], start)
    torch.testing.assert_close(snapshots[-1], samples)
    energies = [-score(s).mean().item() for s in snapshots]
    assert energies == sorted(energies, reverse=True)


def test_sampler_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="step_size"):
        langevin_sample(QuadraticScore(0.0), torch.zeros(1, 1, 2, 2), 5, 0.0, 0.005, 0.03)


# --- loss and model --------------------------------------------------------------------


def test_loss_matches_the_chapters_formula_by_hand() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    # mean fake - mean real = -0.5 - 2 = -2.5; alpha * mean(real^2 + fake^2) per pair:
    # 0.1 * mean(1 + 1, 9 + 0) = 0.55
    loss = contrastive_divergence_loss(real, fake, alpha=0.1)
    assert loss.item() == pytest.approx(-1.95)


def test_energy_net_has_the_chapters_layers() -> None:
    model = EBM()
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (16, 5, 2), (32, 3, 2), (64, 3, 2), (64, 3, 2),
    ]  # fmt: skip
    assert sum(isinstance(m, nn.SiLU) for m in model.net.modules()) == 5
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3,)
    # Keras' count for the chapter's model: 416 + 4640 + 18496 + 36928 + 16448 + 65
    assert sum(p.numel() for p in model.net.parameters()) == 76_993


def test_langevin_steps_ramp_linearly_over_the_fit(tmp_path) -> None:
    model = EBM(**{**SMALL, "langevin_steps": 2, "langevin_steps_final": 6})
    used = []
    sample = model.langevin

    def recording(start: torch.Tensor, steps: int, *args):
        used.append(steps)
        return sample(start, steps, *args)

    model.langevin = recording
    quiet_trainer(tmp_path, max_epochs=3).fit(model, FixedImages())
    assert used == [2, 3, 4, 4, 5, 6]  # 2 + 4 * step / 5, rounded, over the fit's 6 steps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"image_size": 8}, "value_range"), ({"value_range": (0.0, 1.0)}, "image_size")],
)
def test_data_in_another_form_is_refused(tmp_path, kwargs, message) -> None:
    trainer = quiet_trainer(tmp_path, max_steps=1)
    with pytest.raises(ConfigurationError, match=message):  # digits: 8 px in [0, 1]
        trainer.fit(EBM(**kwargs, **SMALL), DigitsData(batch_size=8))


def test_auroc_keeps_the_order_of_large_scores() -> None:
    scores = torch.tensor([40.0, 50.0, 60.0, 45.0, -3.0, 70.0])
    labels = torch.tensor([0, 1, 1, 0, 0, 1])
    auroc = BinaryAUROC()
    for part in (slice(0, 3), slice(3, 6)):  # batch by batch, as in test
        auroc.update(_as_probability(scores[part]), labels[part])
    assert auroc.compute().item() == pytest.approx(roc_auc_score(labels, scores)) == 1.0


# --- exact resume ----------------------------------------------------------------------


class FixedImages(L.LightningDataModule):
    """Two batches of fixed images in [-1, 1], in order: the only random draws of a fit are
    then the model's own."""

    def train_dataloader(self) -> DataLoader:
        images = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        return DataLoader(TensorDataset(images), batch_size=8)


class StopAfter(L.Callback):
    """Ends a fit after `epochs` epochs of its planned length, as a kill would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = trainer.current_epoch + 1 == self.epochs


def test_a_resumed_fit_continues_the_same_chains(tmp_path) -> None:
    """The same chains, and the same ramp of Langevin steps, as the uninterrupted fit."""
    torch.manual_seed(0)
    straight = EBM(**RAMP)
    quiet_trainer(tmp_path, max_epochs=3).fit(straight, FixedImages())

    torch.manual_seed(0)
    first = EBM(**RAMP)
    trainer = quiet_trainer(tmp_path, max_epochs=3, callbacks=[StopAfter(2)])
    trainer.fit(first, FixedImages())
    trainer.save_checkpoint(tmp_path / "epoch2.ckpt")
    torch.manual_seed(1)  # another initialization and other seeds: the checkpoint decides
    resumed = EBM(**RAMP)
    quiet_trainer(tmp_path, max_epochs=3).fit(
        resumed, FixedImages(), ckpt_path=tmp_path / "epoch2.ckpt"
    )

    for got, want in zip(resumed.parameters(), straight.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert resumed.buffer.size == straight.buffer.size == 32
    torch.testing.assert_close(resumed.buffer.images, straight.buffer.images, rtol=0, atol=0)
    torch.testing.assert_close(resumed.buffer.sample(8), straight.buffer.sample(8), rtol=0, atol=0)


def test_checkpoint_reload_brings_back_buffer_and_generators(tmp_path) -> None:
    model = EBM(**SMALL)
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, FixedImages())
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = EBM.load_from_checkpoint(tmp_path / "model.ckpt")
    torch.testing.assert_close(restored.buffer.images, model.buffer.images, rtol=0, atol=0)
    assert (restored.buffer.size, restored.buffer.next) == (model.buffer.size, model.buffer.next)
    for got, want in (
        (restored.chain_rng, model.chain_rng),
        (restored.buffer.rng, model.buffer.rng),
    ):
        torch.testing.assert_close(got.generator.get_state(), want.generator.get_state())
    assert "ebm_chains" not in str(list(restored.state_dict()))  # weights stay weights


# --- data: padding, value range, out-of-distribution test set, predict noise --------------


def test_images_are_padded_and_scaled_to_the_value_range() -> None:
    data = DigitsData(batch_size=16, pad=2, value_range=(-1.0, 1.0))
    data.setup()
    assert data.image_size == 12 and data.input_shape == (1, 12, 12)
    raw, labels = next(iter(data.train_dataloader()))
    images, _ = data.on_after_batch_transfer((raw, labels), 0)
    assert images.shape == (16, 1, 12, 12)
    border = torch.ones(12, 12, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    assert (images[:, :, border] == -1).all()
    torch.testing.assert_close(images[:, :, 2:-2, 2:-2], raw.float() / 16 * 2 - 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pad": -1}, "pad"),
        ({"value_range": (1.0, -1.0)}, "value_range"),
        ({"ood_test": "fashion_mnist"}, "shape"),  # 28x28 beside 8x8 digits
        ({"predict_noise": 0}, "predict_noise"),
    ],
)
def test_bad_image_options_are_clear_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DigitsData(**kwargs)


def test_the_ood_test_set_comes_in_the_same_form() -> None:
    data = MNISTData(batch_size=64, pad=2, value_range=(-1.0, 1.0), ood_test="fashion_mnist")
    data.prepare_data()
    data.setup()
    mnist_loader, fashion_loader = data.test_dataloader()
    assert len(fashion_loader.dataset) == 10_000
    mnist = data.on_after_batch_transfer(next(iter(mnist_loader)), 0)[0]
    fashion = data.on_after_batch_transfer(next(iter(fashion_loader)), 1)[0]
    assert mnist.shape == fashion.shape == (64, 1, 32, 32)
    assert fashion.min() == -1 and fashion.max() == 1
    assert not torch.equal(mnist, fashion)


def test_predict_noise_replaces_the_test_set() -> None:
    data = DigitsData(batch_size=16, predict_noise=40, value_range=(-1.0, 1.0))
    data.setup()
    noise = data.splits["predict"].tensors[0]
    assert noise.shape == (40, 1, 8, 8) and noise.unique().numel() == 17  # every level, 0..16
    assert len(data.predict_dataloader().dataset) == 40


# --- pictures, predict and the judged test ------------------------------------------------


@pytest.fixture(scope="module")
def judge_ckpt(tmp_path_factory) -> str:
    """A LeNet trained for a few batches on MNIST by `cli.py fit`, as the README trains the judge."""
    directory = tmp_path_factory.mktemp("judge")
    fit = run_cli(
        "fit", "--model=lenet", "--model.activation=relu", "--model.pooling=max", "--data=mnist",
        "--data.batch_size=32", "--data.val_size=64", "--trainer.max_steps=3",
        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", cwd=directory,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    return str(directory / "runs" / "lenet" / "version_0" / "checkpoints" / "last.ckpt")


def test_fit_pictures_predict_and_judged_test(tmp_path, judge_ckpt) -> None:
    data = MNISTData(
        batch_size=16, val_size=64, pad=2, value_range=(-1.0, 1.0), ood_test="fashion_mnist",
        predict_noise=10,
    )  # fmt: skip
    model = EBM(**SMALL, sample_steps=4, judge_ckpt=judge_ckpt, judge_samples=16)
    pictures = LangevinPictures(every_n_epochs=1, num_samples=9, steps=8, snapshots=3)
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, limit_test_batches=2,
        callbacks=[pictures],
    )  # fmt: skip
    trainer.fit(model, data)
    assert (tmp_path / "samples" / "epoch_0.png").is_file()
    assert (tmp_path / "chains" / "epoch_0.png").is_file()
    assert {"val/cdiv", "val/score_real", "val/score_noise"} <= set(trainer.callback_metrics)

    results = trainer.test(model, data, verbose=False)[0]
    assert 0 <= results["test/auroc_ood"] <= 1 and 0 <= results["test/auroc_noise"] <= 1
    assert 1 / 10 <= results["test/judge_confidence"] <= 1
    assert results["test/judge_classes"] in range(1, 11)
    assert model.judge is not None and not any(k.startswith("judge") for k in model.state_dict())

    trainer.predict(model, data)
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (10, 1, 32, 32) and samples.min() >= 0 and samples.max() <= 1
    assert (tmp_path / "samples.png").is_file()


def test_missing_judge_is_said_at_fit_start_and_test_says_how_to_make_one(tmp_path) -> None:
    data = MNISTData(batch_size=16, val_size=64, pad=2, value_range=(-1.0, 1.0))
    model = EBM(**SMALL, judge_ckpt=str(tmp_path / "nowhere.ckpt"))
    with pytest.warns(UserWarning, match=r"nowhere\.ckpt does not exist yet.*mnist_judge\.yaml"):
        quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, data)
    with pytest.raises(ConfigurationError, match=r"configs/ebm/mnist_judge\.yaml"):
        quiet_trainer(tmp_path, limit_test_batches=1).test(model, data)
