"""Optimisers of a pack: every lane's parameters of one player live in one (L, P) tensor (the modules'
parameters are views into it), so an update is a handful of tensor operations whatever the layer count,
with each lane's own learning rate, betas, momentum and alpha, and torch's update rules (Adam, SGD,
RMSprop, as ``torch.optim`` computes them without weight decay). A lane marked inactive (it diverged) keeps
its parameters and optimiser state as they were."""

from __future__ import annotations

import torch
from torch import nn

ADAM_EPS = 1e-8  # torch.optim.Adam's eps
RMSPROP_EPS = 1e-8  # torch.optim.RMSprop's eps


class FlatPlayer:
    """One player's parameters (of a packed module) moved into a single (L, P) tensor, with a gradient buffer of
    the same shape that the parameters' ``.grad`` are views of: backward fills it in place."""

    def __init__(self, module: nn.Module, lanes: int):
        self.params = [p for p in module.parameters()]
        sizes = [p[0].numel() for p in self.params]
        device, dtype = self.params[0].device, self.params[0].dtype
        self.flat = torch.empty(lanes, sum(sizes), device=device, dtype=dtype)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        self.grad_views = []
        for p, n in zip(self.params, sizes):
            view = self.flat[:, offset: offset + n]
            view.copy_(p.detach().reshape(lanes, n))
            p.data = view.view(p.shape)
            p.grad = self.grad[:, offset: offset + n].view(p.shape)
            self.grad_views.append(p.grad)
            offset += n

    def zero_grad(self) -> None:
        """Zero the gradients in place (the views stay: autograd accumulates into them)."""
        self.grad.zero_()

    def gathered(self) -> torch.Tensor:
        """The gradient buffer, after making sure every gradient is in it: autograd accumulates into the views
        in place; should it ever have replaced one, its values are copied back and the view restored."""
        for p, view in zip(self.params, self.grad_views):
            if p.grad is not None and p.grad is not view:
                view.copy_(p.grad)
                p.grad = view
        return self.grad


def _col(values: torch.Tensor) -> torch.Tensor:
    """(L,) -> (L, 1): a per-lane value against (L, P)."""
    return values.reshape(-1, 1)


class PackedOptimizer:
    """``kind`` adam | sgd | rmsprop over a FlatPlayer; hyper-parameters are (L,) tensors."""

    def __init__(self, player: FlatPlayer, kind: str, lr: torch.Tensor, betas: torch.Tensor | None = None,
                 momentum: torch.Tensor | None = None, alpha: torch.Tensor | None = None):
        self.player, self.kind = player, kind
        self.lr = lr
        self.betas, self.momentum, self.alpha = betas, momentum, alpha  # betas: (L, 2)
        flat = player.flat
        self.steps = torch.zeros(flat.shape[0], dtype=torch.float64, device=flat.device)
        self.state: dict[str, torch.Tensor] = {}
        if kind == "adam":
            self.state = {"exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
        elif kind == "rmsprop":
            self.state = {"square_avg": torch.zeros_like(flat), "momentum_buffer": torch.zeros_like(flat)}
        elif kind == "sgd":
            self.state = {"momentum_buffer": torch.zeros_like(flat)}
        else:
            raise ValueError(f"no packed optimiser {kind!r}")

    def step(self, active: torch.Tensor) -> None:
        """One update of every active lane ((L,) bool)."""
        p, g, s = self.player.flat, self.player.gathered(), self.state
        keep = _col(~active)
        self.steps += active.to(self.steps.dtype)
        lr = _col(self.lr)
        if self.kind == "adam":
            beta1, beta2 = _col(self.betas[:, 0]), _col(self.betas[:, 1])
            exp_avg = torch.where(keep, s["exp_avg"], torch.lerp(s["exp_avg"], g, 1 - beta1))
            exp_avg_sq = torch.where(keep, s["exp_avg_sq"], s["exp_avg_sq"] * beta2 + (1 - beta2) * g * g)
            step = _col(self.steps.clamp(min=1)).to(p.dtype)
            correction1 = 1 - beta1 ** step
            correction2_sqrt = (1 - beta2 ** step).sqrt()
            denom = exp_avg_sq.sqrt() / correction2_sqrt + ADAM_EPS
            new = p - (lr / correction1) * exp_avg / denom
            s["exp_avg"], s["exp_avg_sq"] = exp_avg, exp_avg_sq
        elif self.kind == "rmsprop":
            alpha, momentum = _col(self.alpha), _col(self.momentum)
            square_avg = torch.where(keep, s["square_avg"], s["square_avg"] * alpha + (1 - alpha) * g * g)
            direction = g / (square_avg.sqrt() + RMSPROP_EPS)
            buf = torch.where(keep, s["momentum_buffer"], s["momentum_buffer"] * momentum + direction)
            new = p - lr * buf
            s["square_avg"], s["momentum_buffer"] = square_avg, buf
        else:  # sgd: the buffer starts at zero, so the first step's is the gradient itself (torch's)
            momentum = _col(self.momentum)
            buf = torch.where(keep, s["momentum_buffer"], s["momentum_buffer"] * momentum + g)
            new = p - lr * buf
            s["momentum_buffer"] = buf
        p.copy_(torch.where(keep, p, new))

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone(), **{k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"].clone().to(self.steps.device)
        for k in self.state:
            self.state[k] = state[k].clone().to(self.player.flat.device)
