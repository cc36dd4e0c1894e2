"""Lightning callbacks of litzoo's own."""

from callbacks.learning_curve import LearningCurvePlot, plot_metrics_csv

__all__ = ["LearningCurvePlot", "plot_metrics_csv"]
