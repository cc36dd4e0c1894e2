"""Lightning callbacks of litzoo's own."""

from callbacks.checkpoints import AtomicCheckpointIO, LatestCheckpoint
from callbacks.episode_gif import EpisodeGif
from callbacks.generated_text import GeneratedTextWriter
from callbacks.learning_curve import LearningCurvePlot, plot_metrics_csv
from callbacks.predictions import ClassPredictionWriter

__all__ = [
    "AtomicCheckpointIO",
    "ClassPredictionWriter",
    "EpisodeGif",
    "GeneratedTextWriter",
    "LatestCheckpoint",
    "LearningCurvePlot",
    "plot_metrics_csv",
]
