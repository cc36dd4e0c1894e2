"""The deep energy-based model of Generative Deep Learning (D. Foster, 2nd ed., chapter 7): a
convolutional network scores images, s(x) = -E(x), high for real data, and is trained by
contrastive divergence against negatives drawn by Langevin dynamics that start from a replay
buffer of earlier samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.classification import BinaryAUROC

from callbacks import SampleWriter, read_checkpoint_record
from lit_modules.base import (
    ConfigurationError,
    ZooModule,
    check_non_negative,
    check_positive,
    mean_metric,
)
from lit_modules.optimization import OptimizerFactory
from registry import MODELS, register_model

# Seeds the uniform noise of validation and test and the chains `test` judges, so that every
# evaluation of a model sees the same noise and none draws from the training chains' generator.
EVALUATION_SEED = 0


class EnergyNet(nn.Module):
    """The chapter's score network: stride-2 convolutions (kernel 5, then 3) with swish (SiLU)
    activations, a swish dense layer and a dense layer to one score per image. The chapter's
    widths are channels (16, 32, 64, 64) and hidden 64; convolutions pad to keep 'same' sizes."""

    def __init__(
        self, in_channels: int, image_size: int, channels: Sequence[int], hidden: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in, side = in_channels, image_size
        for i, width in enumerate(channels):
            kernel = 5 if i == 0 else 3
            layers += [nn.Conv2d(width_in, width, kernel, stride=2, padding=kernel // 2), nn.SiLU()]
            width_in, side = width, (side + 1) // 2
        layers += [
            nn.Flatten(),
            nn.Linear(width_in * side * side, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).squeeze(-1)


def uniform_noise(
    shape: Sequence[int],
    value_range: Sequence[float],
    generator: torch.Generator,
    device: torch.device | str,
) -> torch.Tensor:
    """Images of independent uniform pixels over `value_range`."""
    low, high = value_range
    noise = torch.rand(tuple(shape), generator=generator, device=device)
    return noise.mul_(high - low).add_(low)


def langevin_sample(
    model: nn.Module,
    start: torch.Tensor,
    steps: int,
    step_size: float,
    noise: float,
    grad_clip: float | None,
    value_range: Sequence[float] = (-1.0, 1.0),
    generator: torch.Generator | None = None,
    snapshot_every: int = 0,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stochastic-gradient Langevin dynamics as the chapter writes it: each step adds Gaussian
    noise (std `noise`), then moves the images `step_size` times the score's gradient with
    respect to them, clipped elementwise to +-`grad_clip`, clamping to `value_range` after both.

    Only the images are differentiated (autograd.grad): no parameter gradient accumulates, so
    a training step's gradients are untouched. The model runs in eval mode and every submodule
    gets its own train/eval mode back afterwards. Works inside `torch.no_grad` and
    `torch.inference_mode` (validation, test, predict). Returns the final images and, when
    `snapshot_every` > 0, the chain at step 0 and every `snapshot_every` steps after it, with
    the final images last."""
    check_non_negative(steps=steps, noise=noise, snapshot_every=snapshot_every)
    check_positive(step_size=step_size, **({} if grad_clip is None else {"grad_clip": grad_clip}))
    low, high = value_range
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            images = start.detach().clone()  # a normal tensor even when `start` is an inference one
            snapshots = [images.clone()] if snapshot_every else []
            for step in range(1, steps + 1):
                kick = torch.randn(
                    images.shape, generator=generator, device=images.device, dtype=images.dtype
                )
                images = images.add_(kick, alpha=noise).clamp_(low, high).requires_grad_()
                (grad,) = torch.autograd.grad(model(images).sum(), images)
                if grad_clip is not None:
                    grad = grad.clamp_(-grad_clip, grad_clip)
                images = images.detach().add_(grad, alpha=step_size).clamp_(low, high)
                if snapshot_every and (step % snapshot_every == 0 or step == steps):
                    snapshots.append(images.clone())
    finally:
        for module, training in modes:
            module.training = training
    return images, snapshots


def contrastive_divergence_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, alpha: float
) -> torch.Tensor:
    """The chapter's loss: mean s(fake) - mean s(real), plus `alpha` times the mean of
    s(real)^2 + s(fake)^2 over the batch's pairs, which keeps the scores near zero."""
    divergence = fake_scores.mean() - real_scores.mean()
    return divergence + alpha * (real_scores.pow(2) + fake_scores.pow(2)).mean()


class CheckpointedGenerator:
    """A seeded torch.Generator for the device it is asked for, whose state a checkpoint holds.

    A generator draws on one device; asked for another, it is re-seeded there from `seed`
    (generator states do not carry between device types)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def on(self, device: torch.device) -> torch.Generator:
        if self.generator.device != device:
            self.generator = torch.Generator(device).manual_seed(self.seed)
        return self.generator

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "device": str(self.generator.device),
            "state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        try:
            generator = torch.Generator(state["device"])
            generator.set_state(state["state"])
        except RuntimeError:
            rank_zero_warn(
                f"the checkpoint's random state is for {state['device']}, which this machine "
                "lacks: the sampler's noise restarts from its seed instead of continuing"
            )
            generator = torch.Generator().manual_seed(self.seed)
        self.generator = generator


class ReplayBuffer(nn.Module):
    """Earlier Langevin samples, from which new chains start (persistent contrastive divergence).

    `sample(n)` gives n chain starts: each is uniform noise with probability
    `restart_fraction` (always while the buffer is empty), otherwise a stored image drawn
    uniformly with replacement. `push` stores new samples, overwriting the oldest once
    `capacity` are held. The images follow the module to its device but stay out of its
    `state_dict` (the weights); `chains_state` holds them and the random state for the EBM's
    checkpoints, so a resumed fit continues the same chains."""

    def __init__(
        self,
        capacity: int,
        image_shape: Sequence[int],
        restart_fraction: float = 0.05,
        value_range: Sequence[float] = (-1.0, 1.0),
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_positive(capacity=capacity)
        if not 0.0 <= restart_fraction <= 1.0:
            raise ConfigurationError(f"restart_fraction must be in [0, 1], got {restart_fraction}")
        self.capacity = capacity
        self.image_shape = tuple(image_shape)
        self.restart_fraction = restart_fraction
        self.value_range = tuple(value_range)
        self.rng = CheckpointedGenerator(seed)
        self.register_buffer("images", torch.zeros(capacity, *self.image_shape), persistent=False)
        self.size = 0  # images held
        self.next = 0  # slot the next pushed image goes to

    def sample(self, n: int) -> torch.Tensor:
        device = self.images.device
        generator = self.rng.on(device)
        noise = uniform_noise((n, *self.image_shape), self.value_range, generator, device)
        if self.size == 0:
            return noise
        restart = torch.rand(n, generator=generator, device=device) < self.restart_fraction
        picks = torch.randint(0, self.size, (n,), generator=generator, device=device)
        stored = self.images.index_select(0, picks)
        return torch.where(restart.view(-1, *[1] * len(self.image_shape)), noise, stored)

    def push(self, images: torch.Tensor) -> None:
        images = images.detach()[-self.capacity :]
        n = len(images)
        first = min(n, self.capacity - self.next)  # up to the end of the ring, then from 0
        self.images[self.next : self.next + first] = images[:first]
        self.images[: n - first] = images[first:]
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def chains_state(self) -> dict[str, Any]:
        return {
            "images": self.images[: self.size].cpu().clone(),
            "next": self.next,
            "rng": self.rng.state_dict(),
        }

    def load_chains_state(self, state: dict[str, Any]) -> None:
        images = state["images"]
        if len(images) > self.capacity or tuple(images.shape[1:]) != self.image_shape:
            raise ConfigurationError(
                f"the checkpoint's replay buffer holds {tuple(images.shape)} images, which do not "
                f"fit a buffer of capacity {self.capacity} and image shape {self.image_shape}; "
                "pass the buffer_size and image settings it was trained with"
            )
        self.images[: len(images)] = images.to(self.images.device)
        self.size, self.next = len(images), state["next"]
        self.rng.load_state_dict(state["rng"])


def _random_seed() -> int:
    """A seed drawn from torch's global generator, so `seed_everything` fixes the model's own."""
    return int(torch.randint(0, 2**62, ()).item())


def load_judge(path: str, device: torch.device) -> L.LightningModule:
    """The classifier that `test` asks to label generated samples: a litzoo checkpoint, loaded
    with its registered class, in eval mode and without gradients."""
    if not Path(path).is_file():
        raise ConfigurationError(
            f"judge_ckpt {path}: no such file. Train the judge first (python cli.py fit --config "
            "configs/ebm/mnist_judge.yaml writes runs/mnist_judge/best.ckpt) or pass "
            "--model.judge_ckpt null to test without judged samples"
        )
    saved = read_checkpoint_record(Path(path))["hyper_parameters"].get("_class_path")
    entry = MODELS.entry_for_class(saved) if saved else None
    if entry is None:
        raise ConfigurationError(
            f"judge_ckpt {path} was not written by a registered litzoo model (class {saved}); "
            "give a classifier checkpoint written by python cli.py fit"
        )
    judge = entry.cls.load_from_checkpoint(path, map_location=device)
    judge.eval().requires_grad_(False)
    return judge


@register_model(
    "ebm",
    family="ebm",
    data="mnist",
    monitor="val/cdiv",
    mode="min",
    test_kwargs={
        "channels": [4, 4, 4, 4],
        "hidden": 8,
        "langevin_steps": 3,
        "buffer_size": 64,
        "sample_steps": 3,
        "judge_samples": 8,
    },
    test_data_kwargs={"pad": 2, "value_range": (-1.0, 1.0)},
)
class EBM(ZooModule):
    """Energy-based model (Generative Deep Learning ch. 7) trained by contrastive divergence.

    Negatives come from Langevin dynamics started from a replay buffer of earlier samples.

    `test` logs the chapter's scores and contrastive divergence against uniform noise, the
    AUROC of the score separating the test images from uniform noise (`test/auroc_noise`) and
    from a second, out-of-distribution test set when the data provides one (`test/auroc_ood`,
    e.g. `--data.ood_test fashion_mnist`), and, with a `judge_ckpt`, the judge classifier's
    mean confidence on generated samples and how many of its classes they cover."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 32,
        value_range: tuple[float, float] = (-1.0, 1.0),
        channels: list[int] | None = None,
        hidden: int = 64,
        langevin_steps: int = 60,
        langevin_steps_final: int | None = None,
        step_size: float = 10.0,
        langevin_noise: float = 0.005,
        grad_clip: float | None = 0.03,
        data_noise: float = 0.005,
        alpha: float = 0.1,
        buffer_size: int = 8192,
        restart_fraction: float = 0.05,
        sample_steps: int = 1000,
        judge_ckpt: str | None = None,
        judge_samples: int = 256,
        lr: float = 1e-4,
        optimizer: OptimizerFactory = torch.optim.Adam,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            in_channels: image channels (linked from the data).
            image_size: side of the square input images (linked from the data; the chapter
                pads MNIST to 32).
            value_range: (low, high) pixel range of the data (linked from it); the sampler's
                noise and clamp use it. The chapter's is (-1, 1).
            channels: widths of the stride-2 convolutions; None means the chapter's
                [16, 32, 64, 64].
            hidden: width of the dense layer before the score.
            langevin_steps: Langevin steps per training batch's negatives (chapter: 60).
            langevin_steps_final: if set, the steps per batch grow linearly from
                `langevin_steps` at the fit's first batch to this at its last (planned from
                max_epochs or max_steps): few steps while the model is crude, more once it is
                sharp enough to outrun short chains (configs/ebm/ebm_cpu.yaml says what that
                did). None keeps `langevin_steps` throughout (the chapter).
            step_size: Langevin step size on the score's gradient (chapter: 10).
            langevin_noise: std of the Gaussian noise of each Langevin step (chapter: 0.005).
            grad_clip: elementwise clip of the input gradient (chapter: 0.03); None disables.
            data_noise: std of the Gaussian noise added to real training images (chapter: 0.005).
            alpha: weight of the squared-score regularizer (chapter: 0.1).
            buffer_size: replay-buffer capacity in images (chapter: 8192).
            restart_fraction: share of each batch's chains restarted from uniform noise (0.05).
            sample_steps: Langevin steps from noise for the samples `test` judges, `predict`
                draws and the pictures show (chapter: 1000; 256 leave visibly unfinished digits).
            judge_ckpt: a litzoo classifier checkpoint (e.g. LeNet on MNIST,
                configs/ebm/mnist_judge.yaml) that labels `judge_samples` generated samples in
                `test`; None skips the judged metrics.
            judge_samples: samples generated for the judge.
            lr: learning rate (chapter: Adam, 1e-4).
            optimizer: a torch optimizer called with the parameters and lr (chapter: Adam).
        """
        super().__init__(lr=lr, optimizer=optimizer, **kwargs)
        channels = [16, 32, 64, 64] if channels is None else list(channels)
        check_positive(
            in_channels=in_channels, image_size=image_size, hidden=hidden, step_size=step_size,
            judge_samples=judge_samples, **{f"channels[{i}]": c for i, c in enumerate(channels)},
            **({} if grad_clip is None else {"grad_clip": grad_clip}),
        )  # fmt: skip
        check_non_negative(
            langevin_steps=langevin_steps, langevin_noise=langevin_noise, data_noise=data_noise,
            alpha=alpha, sample_steps=sample_steps,
            **({} if langevin_steps_final is None else {"langevin_steps_final": langevin_steps_final}),
        )  # fmt: skip
        if not channels:
            raise ConfigurationError("channels must name at least one convolution width")
        if not value_range[0] < value_range[1]:
            raise ConfigurationError(f"value_range must be (low, high), got {value_range}")
        self.image_shape = (in_channels, image_size, image_size)
        self.net = EnergyNet(in_channels, image_size, channels, hidden)
        self.buffer = ReplayBuffer(
            buffer_size, self.image_shape, restart_fraction, value_range, _random_seed()
        )
        # Draws the noise on real images and in the training chains.
        self.chain_rng = CheckpointedGenerator(_random_seed())
        self.set_evaluation_metrics(
            cdiv=mean_metric(), score_real=mean_metric(), score_noise=mean_metric()
        )
        self.evaluation_metrics["test"].update(
            {"score_ood": mean_metric(), "auroc_noise": BinaryAUROC(), "auroc_ood": BinaryAUROC()}
        )
        self.judge: L.LightningModule | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        """The judge is a tool of `test`, not part of this model: kept out of its submodules,
        parameters and checkpoints."""
        if name == "judge":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The score s(x) = -E(x) of each image."""
        return self.net(images)

    def langevin(
        self, start: torch.Tensor, steps: int, generator: torch.Generator, snapshot_every: int = 0
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`langevin_sample` on this model's network with its step settings."""
        hp = self.hparams
        return langevin_sample(
            self.net, start, steps, hp.step_size, hp.langevin_noise, hp.grad_clip,
            hp.value_range, generator, snapshot_every,
        )  # fmt: skip

    def generate(
        self, num_samples: int, steps: int, seed: int = EVALUATION_SEED, snapshot_every: int = 0
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`num_samples` samples by `steps` Langevin steps from uniform noise, reproducible from
        `seed`, with the chains' snapshots every `snapshot_every` steps (see langevin_sample)."""
        generator = torch.Generator(self.device).manual_seed(seed)
        start = uniform_noise(
            (num_samples, *self.image_shape), self.hparams.value_range, generator, self.device
        )
        return self.langevin(start, steps, generator, snapshot_every)

    def setup(self, stage: str) -> None:
        """Refuse data in another form than the model's, and give each DDP rank its own chains."""
        data = getattr(self.trainer, "datamodule", None)
        data_range = getattr(data, "value_range", None)
        if data_range is not None and tuple(data_range) != tuple(self.hparams.value_range):
            raise ConfigurationError(
                f"the data's pixels lie in {tuple(data_range)} but the model samples in "
                f"value_range {tuple(self.hparams.value_range)}; give both the same range "
                "(configs/ebm/*.yaml use --data.value_range [-1,1] --data.pad 2)"
            )
        data_size = getattr(data, "image_size", None)
        if data_size is not None and data_size != self.hparams.image_size:
            raise ConfigurationError(
                f"the data's images are {data_size} px but the model's image_size is "
                f"{self.hparams.image_size}; give the model the data's size (the CLI links it)"
            )
        rank = self.trainer.global_rank
        if rank:  # a resumed fit then loads rank 0's chains into every rank (see README)
            self.buffer.rng = CheckpointedGenerator(self.buffer.rng.seed + rank)
            self.chain_rng = CheckpointedGenerator(self.chain_rng.seed + rank)

    def on_train_start(self) -> None:
        self.planned_steps = int(self.trainer.estimated_stepping_batches)
        judge = self.hparams.judge_ckpt
        if judge is not None and not Path(judge).is_file():  # said now, not after the fit
            rank_zero_warn(
                f"judge_ckpt {judge} does not exist yet: `test` will need it (python cli.py fit "
                "--config configs/ebm/mnist_judge.yaml writes runs/mnist_judge/best.ckpt), or "
                "pass --model.judge_ckpt null"
            )

    def current_langevin_steps(self) -> int:
        """Langevin steps for this batch's negatives: `langevin_steps`, or the point reached
        on the ramp to `langevin_steps_final` (a function of the step, so resumes follow it)."""
        start, final = self.hparams.langevin_steps, self.hparams.langevin_steps_final
        if final is None:
            return start
        progress = min(1.0, self.global_step / max(1, self.planned_steps - 1))
        return round(start + progress * (final - start))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        real = batch[0]
        generator = self.chain_rng.on(real.device)
        kick = torch.randn(real.shape, generator=generator, device=real.device, dtype=real.dtype)
        real = (real + hp.data_noise * kick).clamp_(*hp.value_range)
        steps = self.current_langevin_steps()
        fake, _ = self.langevin(self.buffer.sample(len(real)), steps, generator)
        self.buffer.push(fake)
        real_scores, fake_scores = self.net(torch.cat((real, fake))).split(len(real))
        loss = contrastive_divergence_loss(real_scores, fake_scores, hp.alpha)
        if self.is_logging_step(self.global_step):
            self.log("train/loss", loss)
            self.log("train/cdiv", fake_scores.mean() - real_scores.mean())
            self.log("train/score_real", real_scores.mean())
            self.log("train/score_fake", fake_scores.mean())
            self.log("train/langevin_steps", float(steps))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.evaluation_rng = torch.Generator(self.device).manual_seed(EVALUATION_SEED)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def _score_against_noise(self, real: torch.Tensor, stage: str) -> torch.Tensor:
        """Score the images and as many uniform-noise images; update the chapter's metrics.
        Returns the (real, noise) scores."""
        noise = uniform_noise(
            real.shape, self.hparams.value_range, self.evaluation_rng, self.device
        )
        scores = self.net(torch.cat((real, noise)))
        real_scores, noise_scores = scores.split(len(real))
        metrics = self.evaluation_metrics[stage]
        metrics["cdiv"].update(noise_scores.mean() - real_scores.mean(), len(real))
        metrics["score_real"].update(real_scores)
        metrics["score_noise"].update(noise_scores)
        return real_scores, noise_scores

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._score_against_noise(batch[0], "val")

    def test_step(
        self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Dataloader 0 is the data's own test set, 1 an out-of-distribution one (if given)."""
        metrics = self.evaluation_metrics["test"]
        if dataloader_idx == 0:
            real_scores, noise_scores = self._score_against_noise(batch[0], "test")
            in_distribution = torch.ones_like(real_scores, dtype=torch.long)
            metrics["auroc_noise"].update(_as_probability(real_scores), in_distribution)
            metrics["auroc_noise"].update(_as_probability(noise_scores), 0 * in_distribution)
            metrics["auroc_ood"].update(_as_probability(real_scores), in_distribution)
        elif dataloader_idx == 1:
            ood_scores = self.net(batch[0])
            metrics["score_ood"].update(ood_scores)
            out = torch.zeros_like(ood_scores, dtype=torch.long)
            metrics["auroc_ood"].update(_as_probability(ood_scores), out)
        else:
            raise ConfigurationError(
                f"ebm tests on two dataloaders at most (the test set and an out-of-distribution "
                f"one), got dataloader {dataloader_idx}"
            )

    def on_test_start(self) -> None:
        if self.hparams.judge_ckpt is not None:
            self.judge = load_judge(self.hparams.judge_ckpt, self.device)

    def on_test_epoch_end(self) -> None:
        metrics = self.evaluation_metrics["test"]
        if not metrics["score_ood"].update_called:
            rank_zero_warn(
                "no out-of-distribution test set, so no test/auroc_ood: give the data one "
                "(e.g. --data.ood_test fashion_mnist)"
            )
        for name, metric in metrics.items():
            if metric.update_called and (name != "auroc_ood" or metrics["score_ood"].update_called):
                self.log(f"test/{name}", metric)  # Lightning computes and resets it
            else:
                metric.reset()
        if self.judge is not None:
            confidence, classes = self.judged_sample_quality()
            self.log("test/judge_confidence", confidence)
            self.log("test/judge_classes", float(classes))

    def judged_sample_quality(self) -> tuple[torch.Tensor, int]:
        """The judge's mean top-class probability on `judge_samples` samples generated from
        noise, and the number of distinct classes it assigns them."""
        samples, _ = self.generate(self.hparams.judge_samples, self.hparams.sample_steps)
        probabilities = self.judge(self.judge_input(samples)).softmax(dim=-1)
        confidence, labels = probabilities.max(dim=-1)
        return confidence.mean(), int(labels.unique().numel())

    def judge_input(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples in the judge's form: padding cropped to its image size, pixels in [0, 1]."""
        side = self.judge.hparams.get("image_size", samples.shape[-1])
        crop = (samples.shape[-1] - side) // 2
        if crop < 0:
            raise ConfigurationError(
                f"the judge takes {side} px images, larger than the ebm's {samples.shape[-1]} px"
            )
        samples = samples[..., crop : crop + side, crop : crop + side]
        low, high = self.hparams.value_range
        return (samples - low) / (high - low)

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """The batch's images after `sample_steps` Langevin steps: samples when they are noise
        (`--data.predict_noise N`), the model's version of them otherwise."""
        generator = torch.Generator(self.device).manual_seed(EVALUATION_SEED + batch_idx)
        samples, _ = self.langevin(batch[0], self.hparams.sample_steps, generator)
        return samples

    def configure_callbacks(self) -> list[L.Callback]:
        return [SampleWriter()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ebm_chains"] = {
            "buffer": self.buffer.chains_state(),
            "chain_rng": self.chain_rng.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "ebm_chains" in checkpoint:
            self.buffer.load_chains_state(checkpoint["ebm_chains"]["buffer"])
            self.chain_rng.load_state_dict(checkpoint["ebm_chains"]["chain_rng"])


def _as_probability(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into (0, 1) in the same order, for torchmetrics' AUROC (which needs only
    the order, and would otherwise apply a float32 sigmoid batch by batch, rounding every score
    above ~17 to 1). A softsign in float64 keeps distinct scores distinct up to ~1e15."""
    scores = scores.double()
    return (scores / (1 + scores.abs()) + 1) / 2
