import math

import pytest
import torch

import ganlab.data.classifier as classifier_module
from ganlab.data.classifier import digit_classifier
from ganlab.data import StackedDigits, load_digits
from ganlab.diagnose.samples import digit_metrics


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


def test_real_digits_score_near_the_floor_and_noise_far_away(clf):
    digits = load_digits()
    g = torch.Generator().manual_seed(0)
    a, b = digits.sample(1000, g), digits.sample(1000, g)
    real = digit_metrics(a, b, clf, stacked=False)
    noise = digit_metrics(torch.rand(1000, 1, 8, 8, generator=g) * 2 - 1, b, clf, stacked=False)
    one_class = digit_metrics(digits.images[digits.labels == 3][:170].repeat(6, 1, 1, 1)[:1000], b, clf, stacked=False)
    assert real["modes"] == 10 and real["reverse_kl"] < 0.02
    assert real["fd"] < 0.1 * noise["fd"] and real["fd"] < 0.1 * one_class["fd"]
    assert one_class["modes"] <= 2 and one_class["reverse_kl"] > math.log(10) - 0.3
    assert real["fd_n"] == 1000 and real["classifier_acc"] == clf.heldout_accuracy


def test_stacked_digits_count_triples(clf):
    stacked = StackedDigits(load_digits())
    g = torch.Generator().manual_seed(1)
    m = digit_metrics(stacked.sample(2500, g), stacked.sample(2500, g), clf, stacked=True)
    # 2500 uniform draws over 1000 triples cover 1000 (1 - e^-2.5) ~ 918; misclassification blurs a little.
    assert 850 <= m["modes"] <= 1000
    assert m["reverse_kl"] < 0.6
