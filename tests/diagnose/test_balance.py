"""ganlab.diagnose.balance: D's accuracies on real and generated samples."""

import torch

from ganlab.diagnose.balance import d_accuracy


def test_d_accuracy_hand_computed():
    real = torch.tensor([2.0, -1.0, 0.5, 3.0])  # 3 of 4 called real
    fake = torch.tensor([-2.0, 1.0, 4.0, 0.1])  # 1 of 4 called fake
    acc_real, acc_fake = d_accuracy(real, fake)
    assert acc_real.item() == 0.75 and acc_fake.item() == 0.25

