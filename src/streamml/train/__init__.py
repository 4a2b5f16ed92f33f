"""Training from topics: pinned datasets, trainers, evaluation, online learning, retraining.

>>> from streamml.train import METRICS
>>> "roc_auc" in METRICS
True
"""

from streamml.train.dataset import Dataset, LabelSource
from streamml.train.deep_models import (
    KerasAutoencoder,
    KerasAutoencoderTrainer,
    TorchAutoencoder,
    TorchAutoencoderTrainer,
    TorchClassifier,
    TorchClassifierTrainer,
)
from streamml.train.evaluate import METRICS, evaluate, score_metric
from streamml.train.job import Retrainer, TrainingJob, TrainingResult, reproduce, request_retrain
from streamml.train.labels import LabelRule
from streamml.train.online import OnlineLearner, OnlineReport, prequential_step
from streamml.train.reader import TopicRange, read_ranges, resolve_ranges
from streamml.train.trainers import (
                                     BUILTIN_TRAINERS,
                                     Autoencoder,
                                     AutoencoderTrainer,
                                     IsolationForestTrainer,
                                     SklearnClassifier,
                                     Trained,
                                     Trainer,
)

__all__ = [
    "Dataset", "LabelSource", "LabelRule", "TopicRange", "read_ranges", "resolve_ranges",
    "Trainer", "Trained", "BUILTIN_TRAINERS", "SklearnClassifier", "IsolationForestTrainer", "AutoencoderTrainer",
    "Autoencoder", "TorchAutoencoderTrainer", "TorchAutoencoder", "TorchClassifierTrainer", "TorchClassifier",
    "KerasAutoencoderTrainer", "KerasAutoencoder",
    "METRICS", "score_metric", "evaluate",
    "TrainingJob", "TrainingResult", "Retrainer", "request_retrain", "reproduce",
    "OnlineLearner", "OnlineReport", "prequential_step",
]
