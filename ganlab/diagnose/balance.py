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
