"""Lightning callbacks of litzoo's own."""

from callbacks.learning_curve import LearningCurvePlot, plot_metrics_csv
from callbacks.predictions import ClassPredictionWriter

__all__ = ["ClassPredictionWriter", "LearningCurvePlot", "plot_metrics_csv"]
