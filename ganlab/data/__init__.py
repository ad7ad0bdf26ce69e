"""What a GAN learns from, and what is known about it: Gaussian mixtures with their modes, the digits with
their classes (and the small classifier that recognises them, the feature space of the Frechet distance),
a user's own arrays. Public: ``make_dataset``, the data set classes, ``load_digits`` and
``digit_classifier``. Imports only ``ganlab.config``."""

from ganlab.data.datasets import (
    Dataset,
    EmpiricalPoints,
    GaussianMixture,
    ImageDataset,
    PointMass,
    StackedDigits,
    grid,
    load_digits,
    load_npz,
    make_dataset,
    ring,
)
from ganlab.data.classifier import DigitClassifier, digit_classifier

__all__ = ["Dataset", "EmpiricalPoints", "GaussianMixture", "ImageDataset", "PointMass", "StackedDigits", "grid",
           "ring", "load_digits", "load_npz", "make_dataset",
           "DigitClassifier", "digit_classifier"]
