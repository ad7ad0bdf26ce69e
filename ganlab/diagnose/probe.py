"""D as a feature extractor: a linear probe on its penultimate features (the DCGAN paper classified
CIFAR-10 with a linear model on D's features). The probe's accuracy on held-out digits, next to the same
probe on D as it was initialised, says what adversarial training taught D about the data."""

from __future__ import annotations

import warnings

import torch

from ganlab.data import load_digits
from ganlab.data.classifier import heldout_split

PROBE_C = 1.0  # defaults of diagnostics.d_probe_c / d_probe_max_iter, for a probe run by hand
PROBE_MAX_ITER = 1000


@torch.no_grad()
def d_features(D: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """D's penultimate features in evaluation mode (the mode left as it was), on D's device, returned on CPU."""
    device = next(D.parameters()).device
    was_training = D.training
    D.eval()
    try:
        return D.features(images.to(device)).cpu()
    finally:
        D.train(was_training)


def labelled_subset(train: torch.Tensor, labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """The first ``per_class`` training digits of each class, in the split's (seeded) order; 0: all of them."""
    if per_class <= 0:
        return train
    keep = torch.cat([train[labels[train] == k][:per_class] for k in labels.unique()])
    return keep.sort().values


def d_feature_probe(D: torch.nn.Module, c: float = PROBE_C, max_iter: int = PROBE_MAX_ITER, per_class: int = 0) -> float:
    """Held-out accuracy of a logistic regression (standardised features, L2, L-BFGS) fitted on D's features
    of the training digits, scored on the held-out digits (the split of the FD classifier, 20 %). D never saw
    labels; it did see the held-out images unlabelled during training, as in the DCGAN protocol. Deterministic:
    full-batch L-BFGS from zero. An unconverged fit keeps its last iterate (no warning spam in workers)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    train, test = heldout_split(len(digits.labels))
    train = labelled_subset(train, digits.labels, per_class)
    features = d_features(D, digits.images).double().numpy()
    labels = digits.labels.numpy()
    scaler = StandardScaler().fit(features[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = LogisticRegression(C=c, max_iter=max_iter).fit(scaler.transform(features[train]), labels[train])
    return float(probe.score(scaler.transform(features[test]), labels[test]))
