"""ganlab.data.classifier: the digit classifier whose features and predictions score generated digits (the
scores themselves: tests/diagnose/test_samples.py)."""

import pytest
import torch

import ganlab.data.classifier as classifier_module
from ganlab.data.classifier import digit_classifier
from ganlab.data import load_digits


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    import os

    old = os.environ.get("GANLAB_CACHE")
    os.environ["GANLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    classifier_module._loaded = None
    c = digit_classifier()
    yield c
    classifier_module._loaded = None
    if old is None:
        os.environ.pop("GANLAB_CACHE")
    else:
        os.environ["GANLAB_CACHE"] = old


def test_classifier_is_good_and_cached(clf):
    assert clf.heldout_accuracy > 0.93
    path = classifier_module.cache_dir() / f"digit_classifier_v{classifier_module.CACHE_VERSION}.pt"
    assert path.is_file()
    classifier_module._loaded = None
    again = digit_classifier()  # from disk: the same network
    x = load_digits().images[:50]
    assert torch.equal(again.features(x), clf.features(x)) and again.heldout_accuracy == clf.heldout_accuracy

