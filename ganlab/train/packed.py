"""Models of a pack: L lanes' generators (or discriminators) as one module whose every parameter has a leading
lane dimension, trained at once. Each lane's weights start as the model ganlab builds for that trial alone
(``build_models`` under the lane's seed) and come out as such a model again (``lane_state``), so packing
changes how the numbers are computed, never which model a trial is.

Parameter and buffer names are those of the single model with the lane dimension in front (``net.0.weight``
of shape (L, out, in)): the pack's state dict is the lanes' state dicts stacked. Layers run as batched
kernels: ``baddbmm`` for linear layers, grouped convolutions for convolutional ones (channels lane-major,
``(B, L * C, H, W)``), batch norm per lane and channel, and spectral normalisation by a batched power
iteration that is torch's (``torch.nn.utils.parametrizations.spectral_norm``) lane by lane.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SN_EPS = 1e-12  # torch's spectral_norm eps


def stack_states(modules: list[nn.Module]) -> dict[str, torch.Tensor]:
    """The lanes' state dicts, stacked along a new first dimension."""
    states = [m.state_dict() for m in modules]
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


def lane_state(packed: nn.Module, lane: int) -> dict[str, torch.Tensor]:
    """One lane's state dict, as the single model's (detached copies on CPU)."""
    return {k: v[lane].detach().cpu().clone() for k, v in packed.state_dict().items()}


class _Holder(nn.Module):
    """A named container, so parameter paths match torch's parametrize layout."""


class _WeightOf:
    """How a packed layer holds its weight, plain or spectrally normalised, under torch's names (``weight``, or
    ``parametrizations.weight.original`` with buffers ``parametrizations.weight.0._u`` and ``._v``)."""

    def _init_weight(self, shape: torch.Size, sn_dim: int | None) -> None:
        self.sn_dim = sn_dim
        empty = torch.empty(shape)
        if sn_dim is None:
            self.weight = nn.Parameter(empty)
            return
        rows = shape[1 + sn_dim]
        self.parametrizations = _Holder()
        self.parametrizations.weight = _Holder()
        self.parametrizations.weight.original = nn.Parameter(empty)
        sn = _Holder()
        sn.register_buffer("_u", torch.empty(shape[0], rows))
        sn.register_buffer("_v", torch.empty(shape[0], math.prod(shape[1:]) // rows))
        self.parametrizations.weight.add_module("0", sn)

    def current_weight(self) -> torch.Tensor:
        """The weight the layer uses: W, or W / sigma(W) after one power iteration in training mode."""
        if self.sn_dim is None:
            return self.weight
        weight = self.parametrizations.weight.original
        sn = self.parametrizations.weight._modules["0"]
        mat = (weight if self.sn_dim == 0 else weight.transpose(1, 1 + self.sn_dim)).flatten(2)  # (L, rows, rest)
        if self.training:
            with torch.no_grad():  # torch's _power_method, one iteration, every lane at once
                u = F.normalize(torch.bmm(mat, sn._v.unsqueeze(2)).squeeze(2), dim=1, eps=SN_EPS)
                v = F.normalize(torch.bmm(mat.transpose(1, 2), u.unsqueeze(2)).squeeze(2), dim=1, eps=SN_EPS)
                sn._u.copy_(u)
                sn._v.copy_(v)
        u, v = sn._u.clone(), sn._v.clone()
        sigma = (u * torch.bmm(mat, v.unsqueeze(2)).squeeze(2)).sum(1)
        return weight / sigma.reshape(-1, *([1] * (weight.dim() - 1)))


class PackedLinear(_WeightOf, nn.Module):
    """x (L, B, in) -> (L, B, out)."""

    def __init__(self, lanes: int, single: nn.Module, spectral: bool):
        super().__init__()
        base = single.parametrizations.weight.original if spectral else single.weight
        self._init_weight(torch.Size((lanes, *base.shape)), 0 if spectral else None)
        self.bias = nn.Parameter(torch.empty(lanes, base.shape[0])) if single.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.current_weight()
        if self.bias is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, w.transpose(1, 2))


class PackedConv(_WeightOf, nn.Module):
    """Grouped convolution in lane-major channel layout: x (B, L * in, H, W) -> (B, L * out, H', W')."""

    def __init__(self, lanes: int, single: nn.Module, spectral: bool):
        super().__init__()
        self.lanes, self.transposed = lanes, isinstance(single, nn.ConvTranspose2d)
        self.stride, self.padding = single.stride, single.padding
        base = single.parametrizations.weight.original if spectral else single.weight
        sn_dim = (1 if self.transposed else 0) if spectral else None
        self._init_weight(torch.Size((lanes, *base.shape)), sn_dim)
        out_channels = base.shape[1 if self.transposed else 0]
        self.bias = nn.Parameter(torch.empty(lanes, out_channels)) if single.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.current_weight().flatten(0, 1)  # (L * out, in, k, k); transposed: (L * in, out, k, k)
        bias = None if self.bias is None else self.bias.flatten()
        if self.transposed:
            return F.conv_transpose2d(x, w, bias, self.stride, self.padding, groups=self.lanes)
        return F.conv2d(x, w, bias, self.stride, self.padding, groups=self.lanes)


class PackedBatchNorm(nn.Module):
    """Batch norm of each lane's batch: (L, B, C) features, or (B, L * C, H, W) maps (``maps``)."""

    def __init__(self, lanes: int, single: nn.modules.batchnorm._BatchNorm, maps: bool):
        super().__init__()
        c = single.num_features
        self.maps, self.eps, self.momentum = maps, single.eps, single.momentum
        self.weight = nn.Parameter(torch.empty(lanes, c))
        self.bias = nn.Parameter(torch.empty(lanes, c))
        self.register_buffer("running_mean", torch.empty(lanes, c))
        self.register_buffer("running_var", torch.empty(lanes, c))
        self.register_buffer("num_batches_tracked", torch.empty(lanes, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        if self.maps:  # channels are lane-major already: torch's kernel normalises each one apart
            flat = lambda t: t.flatten()  # noqa: E731
            return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), flat(self.weight),
                                flat(self.bias), self.training, self.momentum, self.eps)
        lanes, batch, c = x.shape  # (L, B, C) -> (B, L * C): each lane's channel is one batch-norm channel
        y = F.batch_norm(x.transpose(0, 1).reshape(batch, lanes * c), self.running_mean.view(-1),
                         self.running_var.view(-1), self.weight.flatten(), self.bias.flatten(), self.training,
                         self.momentum, self.eps)
        return y.reshape(batch, lanes, c).transpose(0, 1)


class PackedLayerNorm(nn.Module):
    def __init__(self, lanes: int, single: nn.LayerNorm):
        super().__init__()
        self.shape, self.eps = single.normalized_shape, single.eps
        self.weight = nn.Parameter(torch.empty(lanes, *self.shape))
        self.bias = nn.Parameter(torch.empty(lanes, *self.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, None, None, self.eps) * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)


def has_spectral_norm(module: nn.Module) -> bool:
    return hasattr(module, "parametrizations") and "weight" in module.parametrizations


def pack_layer(lanes: int, single: nn.Module, maps: bool) -> nn.Module:
    """The packed twin of one layer of a single model (activations and reshapes are shared as they are)."""
    if isinstance(single, nn.Linear):
        return PackedLinear(lanes, single, has_spectral_norm(single))
    if isinstance(single, (nn.Conv2d, nn.ConvTranspose2d)):
        return PackedConv(lanes, single, has_spectral_norm(single))
    if isinstance(single, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return PackedBatchNorm(lanes, single, maps)
    if isinstance(single, nn.LayerNorm):
        return PackedLayerNorm(lanes, single)
    if isinstance(single, (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Flatten, nn.Unflatten)):
        return single
    raise TypeError(f"no packed layer for {type(single).__name__}")


class PackedNet(nn.Module):
    """A pack of generators or discriminators (the single models' ``net`` of linear, convolutional, norm,
    activation and (un)flatten layers; the Dirac-GAN's point mass and slope pack in ``models``). Inputs and
    outputs carry the lane dimension first: G maps (L, B, latent) to (L, B, *data_shape); D maps (L, B,
    *data_shape) to (L, B)."""

    def __init__(self, singles: list[nn.Module]):
        super().__init__()
        template, lanes = singles[0], len(singles)
        self.lanes = lanes
        self.data_shape = getattr(template, "data_shape", None)
        self.latent_dim = getattr(template, "latent_dim", None)
        self.flatten_input = getattr(template, "flatten", False)
        layers, maps = [], False
        for layer in template.net:
            maps = maps or isinstance(layer, (nn.Unflatten, nn.Conv2d, nn.ConvTranspose2d))
            if isinstance(layer, nn.Flatten):
                maps = False
            layers.append(pack_layer(lanes, layer, maps))
        self.net = nn.Sequential(*layers)
        self.load_state_dict(stack_states(singles))

    def state_metrics(self, D: nn.Module) -> dict[str, torch.Tensor]:
        """Figures of the players' state itself; a network has none (the Dirac-GAN's point mass has its own)."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lanes, batch = x.shape[0], x.shape[1]
        if self.flatten_input:
            x = x.reshape(lanes, batch, -1)
        elif x.dim() == 5:  # images into the lane-major channel layout of grouped convolutions
            x = x.transpose(0, 1).reshape(batch, lanes * x.shape[2], *x.shape[3:])
        for layer in self.net:
            if isinstance(layer, nn.Unflatten):  # (L, B, C * H * W) -> (B, L * C, H, W)
                c, h, w = layer.unflattened_size
                x = x.transpose(0, 1).reshape(batch, lanes * c, h, w)
            elif isinstance(layer, nn.Flatten):  # (B, L * C, H, W) -> (L, B, C * H * W)
                x = x.reshape(batch, lanes, -1).transpose(0, 1)
            else:
                x = layer(x)
        if x.dim() == 4:  # maps out: (B, L * C, H, W) -> (L, B, C, H, W)
            x = x.reshape(batch, lanes, -1, *x.shape[2:]).transpose(0, 1)
        if self.data_shape is not None:  # a generator
            return x.reshape(lanes, batch, *self.data_shape)
        return x.reshape(lanes, batch)
