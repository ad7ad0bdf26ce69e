"""The D-feature linear probe: bounds, determinism, and a known answer (features that carry nothing)."""

import torch
from torch import nn

from ganlab.data.classifier import heldout_split
from ganlab.config import DcganConfig
from ganlab.data import load_digits
from ganlab.train.models import Discriminator, build_models
from ganlab.diagnose.probe import d_feature_probe


def test_probe_of_a_random_dcgan_d_is_an_accuracy_and_deterministic():
    torch.manual_seed(0)
    _, D = build_models(DcganConfig(latent_dim=8, channels=8), (1, 8, 8))
    D.train()
    first = d_feature_probe(D)
    assert 0 <= first <= 1 and first == d_feature_probe(D)
    assert D.training  # the probe puts D back in the mode it found it in


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
