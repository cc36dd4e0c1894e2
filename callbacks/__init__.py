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
from callbacks.generated_text import GeneratedTextWriter
from callbacks.learning_curve import LearningCurvePlot, plot_learning_curve
from callbacks.predictions import PredictionWriter
from callbacks.progress import MetricsProgressBar
from callbacks.translations import TranslationWriter

__all__ = [
    "AtomicCheckpointIO",
    "AttentionMaps",
    "EpisodeGif",
    "GeneratedTextWriter",
    "LatestCheckpoint",
    "LearningCurvePlot",
    "MetricsProgressBar",
    "PredictionWriter",
    "TranslationWriter",
    "default_callbacks",
    "newest_checkpoint",
    "plot_learning_curve",
    "read_checkpoint_record",
]
