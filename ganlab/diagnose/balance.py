"""How well D tells real from generated samples, from the outputs the training step computed anyway.

Reading the numbers: at the equilibrium D(x) = 1/2 everywhere, so D's accuracy is ~50% on real *and* on
fake samples and the summed D loss is 2 ln 2. Real and fake accuracy are kept apart because their mean can
read 50% while D accepts everything (100% real, 0% fake).
"""

from __future__ import annotations

import torch


def d_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of real samples D calls real (logit > 0, i.e. D > 1/2) and of fakes it calls fake."""
    return (real_logits > 0).double().mean(), (fake_logits < 0).double().mean()


def acc_gap(acc_real, acc_fake):
    """|acc_real - 1/2| + |acc_fake - 1/2|: 0 at the equilibrium; kept apart because a mean of 1/2 can hide D
    accepting everything (1.0 real, 0.0 fake)."""
    return abs(acc_real - 0.5) + abs(acc_fake - 0.5)


def binomial_var(p: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased estimate of the variance of an accuracy measured on n samples, from the accuracy itself:
    p(1 - p) / (n - 1), the binomial p(1 - p) / n with p estimated."""
    return p * (1 - p) / max(n - 1, 1)


def d_auc(real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(AUC, its sampling variance) of D's outputs over the last dimension: the probability that D scores a
    random real sample above a random generated one, ties counting half (the Mann-Whitney U statistic over
    n_real x n_fake). Threshold-free, blind to D's offset and scale, so it means the same for every loss:
    1/2 at the equilibrium, 1 when D separates perfectly, below 1/2 when D ranks fakes above reals. The
    variance is Hanley and McNeil's (1982) for that AUC and these sample sizes: the batch's noise floor."""
    n1, n2 = real_out.shape[-1], fake_out.shape[-1]
    fake_sorted = fake_out.detach().sort(-1).values
    real = real_out.detach().contiguous()
    below = torch.searchsorted(fake_sorted, real, side="left")
    upto = torch.searchsorted(fake_sorted, real, side="right")
    auc = (below + upto).sum(-1).double() / (2 * n1 * n2)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n2 - 1) * (q2 - auc * auc)) / (n1 * n2)
    return auc, var.clamp(min=0)
