"""emotion-edge's runtime: classify images with an exported model (numpy, Pillow, OpenVINO; never TensorFlow).

    >>> with EmotionClassifier.load("exports/run1") as clf:      # doctest: +SKIP
    ...     print(clf.predict("photo.jpg").label)
"""

from .classifier import EmotionClassifier, Prediction
from .files import Candidate, discover
from .locate import default_model, resolve_model
from .metadata import ModelInfo, ModelLoadError
from .preprocess import ImageDecodeError, PreprocessSpec, preprocess

__all__ = [
    "Candidate", "EmotionClassifier", "ImageDecodeError", "ModelInfo", "ModelLoadError", "Prediction",
    "PreprocessSpec", "default_model", "discover", "preprocess", "resolve_model",
]
