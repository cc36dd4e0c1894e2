"""Lightning callbacks of litzoo's own."""

from callbacks.episode_gif import EpisodeGif
from callbacks.generated_text import GeneratedTextWriter
from callbacks.learning_curve import LearningCurvePlot, plot_metrics_csv
from callbacks.predictions import ClassPredictionWriter

__all__ = [
    "ClassPredictionWriter",
    "EpisodeGif",
    "GeneratedTextWriter",
    "LearningCurvePlot",
    "plot_metrics_csv",
]
