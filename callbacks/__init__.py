"""Lightning callbacks of litzoo's own."""

from callbacks.attention_maps import AttentionMaps
from callbacks.checkpoints import AtomicCheckpointIO, LatestCheckpoint
from callbacks.episode_gif import EpisodeGif
from callbacks.finite import NonFiniteError, StopOnNonFinite
from callbacks.generated_text import GeneratedTextWriter
from callbacks.interrupts import FitInterrupted
from callbacks.learning_curve import LearningCurvePlot, plot_metrics_csv
from callbacks.predictions import ClassPredictionWriter
from callbacks.resume import ExactResume
from callbacks.samples import LangevinPictures, SampleWriter
from callbacks.translations import TranslationWriter

__all__ = [
    "AtomicCheckpointIO",
    "AttentionMaps",
    "ClassPredictionWriter",
    "EpisodeGif",
    "ExactResume",
    "FitInterrupted",
    "GeneratedTextWriter",
    "LangevinPictures",
    "LatestCheckpoint",
    "LearningCurvePlot",
    "NonFiniteError",
    "SampleWriter",
    "StopOnNonFinite",
    "TranslationWriter",
    "plot_metrics_csv",
]
