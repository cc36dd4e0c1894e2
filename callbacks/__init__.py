"""Lightning callbacks of litzoo's own."""

from callbacks.attention_maps import AttentionMaps
from callbacks.checkpoints import (
    AtomicCheckpointIO,
    LatestCheckpoint,
    newest_checkpoint,
    read_checkpoint_record,
)
from callbacks.defaults import default_callbacks
from callbacks.episode_gif import EpisodeGif
from callbacks.finite import NonFiniteError, StopOnNonFinite
from callbacks.generated_text import GeneratedTextWriter
from callbacks.interrupts import FitInterrupted
from callbacks.learning_curve import LearningCurvePlot, plot_learning_curve
from callbacks.predictions import PredictionWriter
from callbacks.progress import MetricsProgressBar
from callbacks.resume import ExactResume
from callbacks.translations import TranslationWriter

__all__ = [
    "AtomicCheckpointIO",
    "AttentionMaps",
    "EpisodeGif",
    "ExactResume",
    "FitInterrupted",
    "GeneratedTextWriter",
    "LatestCheckpoint",
    "LearningCurvePlot",
    "MetricsProgressBar",
    "NonFiniteError",
    "PredictionWriter",
    "StopOnNonFinite",
    "TranslationWriter",
    "default_callbacks",
    "newest_checkpoint",
    "plot_learning_curve",
    "read_checkpoint_record",
]
