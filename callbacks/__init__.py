"""Lightning callbacks of litzoo's own."""

from callbacks.attention_maps import AttentionMaps
from callbacks.checkpoints import AtomicCheckpointIO, LatestCheckpoint
from callbacks.episode_gif import EpisodeGif
from callbacks.generated_text import GeneratedTextWriter
from callbacks.learning_curve import LearningCurvePlot, plot_metrics_csv
from callbacks.predictions import ClassPredictionWriter
from callbacks.translations import TranslationWriter

__all__ = [
    "AtomicCheckpointIO",
    "AttentionMaps",
    "ClassPredictionWriter",
    "EpisodeGif",
    "GeneratedTextWriter",
    "LatestCheckpoint",
    "LearningCurvePlot",
    "TranslationWriter",
    "plot_metrics_csv",
]
