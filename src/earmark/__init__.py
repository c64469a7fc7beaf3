"""earmark: zero-shot audio classification with CLAP.

    >>> import earmark
    >>> clf = earmark.Classifier()                      # laion/clap-htsat-fused
    >>> clf.classify("door.mp3", "glass breaking, smoke alarm, dog barking").label

``import earmark`` is light: torch and transformers load when a model does.
"""

from .classify import AudioEmbedding, Classifier, classify
from .errors import AudioError, EarmarkError, LabelError, ModelError, UnknownModelError
from .types import ClassifyOptions, Prediction, Score, Segment, WindowScores

__version__ = "0.1.0"

__all__ = [
    "AudioEmbedding",
    "AudioError",
    "Classifier",
    "ClassifyOptions",
    "EarmarkError",
    "LabelError",
    "ModelError",
    "Prediction",
    "Score",
    "Segment",
    "UnknownModelError",
    "WindowScores",
    "__version__",
    "classify",
]
