"""Training: the seed recipe (data, split, augmentation, models, metrics, plots) and its command lines."""

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) hides our own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
