"""Training from topics: pinned datasets, trainers, evaluation, online learning, retraining."""

from streamml.train.dataset import Dataset, LabelSource
from streamml.train.labels import LabelRule
from streamml.train.reader import TopicRange, read_ranges, resolve_ranges

__all__ = ["Dataset", "LabelSource", "LabelRule", "TopicRange", "read_ranges", "resolve_ranges"]
