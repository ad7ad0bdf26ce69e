"""The D-feature linear probe: bounds, determinism, and a known answer (features that carry nothing)."""

import pytest
import torch
from torch import nn

from ganlab.data.classifier import heldout_split
from ganlab.config import DcganConfig
from ganlab.data import load_digits
from ganlab.train.models import Discriminator, build_models
from ganlab.diagnose.probe import d_feature_probe


def test_probe_of_a_random_dcgan_d_equals_the_protocol_done_by_hand():
    """The probe is the DCGAN protocol: standardised penultimate features of D in eval mode, L2 logistic
    regression fitted on the classifier's training split, accuracy on its held-out split. Recomputed here
    from D.features and scikit-learn directly: the same number, a whole count of the 359 held-out digits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(0)
    _, D = build_models(DcganConfig(latent_dim=8, channels=8), (1, 8, 8))
    D.train()
    first = d_feature_probe(D)
    assert first == d_feature_probe(D)  # deterministic
    assert D.training  # the probe puts D back in the mode it found it in
    digits = load_digits()
    train, test = heldout_split(len(digits.labels))
    D.eval()
    with torch.no_grad():
        x = D.features(digits.images).double().numpy()
    y = digits.labels.numpy()
    scaler = StandardScaler().fit(x[train])
    fit = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x[train]), y[train])
    assert first == pytest.approx(fit.score(scaler.transform(x[test]), y[test]), abs=1e-12)
    assert round(first * len(test)) == pytest.approx(first * len(test), abs=1e-9) and len(test) == 359


def test_constant_features_score_the_majority_class_of_the_training_split():
    """Standardised constant features are all zero: the fitted probe predicts the most frequent training
    label, so its held-out accuracy is that label's share of the held-out digits, exactly."""
    D = Discriminator(nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Linear(4, 1)))
    with torch.no_grad():
        D.net[1].weight.zero_()
        D.net[1].bias.fill_(0.5)
    labels = load_digits().labels
    train, test = heldout_split(len(labels))
    majority = torch.bincount(labels[train]).argmax()
    assert d_feature_probe(D) == (labels[test] == majority).double().mean().item()


def test_labelled_subset_keeps_the_first_k_of_each_class():
    from ganlab.diagnose.probe import labelled_subset

    labels = load_digits().labels
    train, test = heldout_split(len(labels))
    subset = labelled_subset(train, labels, 5)
    assert torch.bincount(labels[subset]).tolist() == [5] * 10
    assert set(subset.tolist()) <= set(train.tolist()) and not set(subset.tolist()) & set(test.tolist())
    assert torch.equal(labelled_subset(train, labels, 0), train)
