import pytest
import torch
from torch import nn

from ganlab.config import DcganConfig, DiracModelConfig, MlpConfig
from ganlab.models import build_models


def _out(G, D, n=5):
    z = torch.randn(n, G.latent_dim)
    x = G(z)
    return x, D(x)


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_mlp_shapes(shape):
    G, D = build_models(MlpConfig(width=16, depth=2, latent_dim=3), shape)
    x, d = _out(G, D)
    assert x.shape == (5, *shape) and d.shape == (5,)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 16, 16)])
def test_dcgan_shapes_and_range(shape):
    G, D = build_models(DcganConfig(channels=8, latent_dim=4), shape)
    x, d = _out(G, D)
    assert x.shape == (5, *shape) and d.shape == (5,)
    assert x.abs().max() <= 1.0  # tanh output, like data scaled to [-1, 1]


@pytest.mark.parametrize("shape", [(1, 8, 12), (1, 6, 6), (2,)])
def test_dcgan_rejects_unsupported_shapes(shape):
    with pytest.raises(ValueError, match="dcgan"):
        build_models(DcganConfig(), shape)


def test_activation_and_norm_layers():
    G, D = build_models(MlpConfig(width=8, depth=2, activation="tanh", norm="batch", norm_d="layer"), (2,))
    g_types = {type(m) for m in G.modules()}
    d_types = {type(m) for m in D.modules()}
    assert nn.Tanh in g_types and nn.BatchNorm1d in g_types and nn.ReLU not in g_types
    assert nn.LayerNorm in d_types and nn.BatchNorm1d not in d_types
    G, D = build_models(MlpConfig(width=8, depth=2), (2,))
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)) for m in [*G.modules(), *D.modules()])
    assert sum(isinstance(m, nn.Linear) for m in G.modules()) == 3  # depth hidden layers + output


def test_dirac_players():
    G, D = build_models(DiracModelConfig(theta0=0.7, psi0=-1.3), (1,))
    assert torch.equal(G(torch.randn(4, 1)), torch.full((4, 1), 0.7))
    x = torch.tensor([[2.0], [-1.0]])
    out = D(x)
    assert torch.allclose(out, torch.tensor([-2.6, 1.3]))
    out.sum().backward()
    assert D.linear.weight.grad.item() == pytest.approx(1.0)  # d/dpsi sum(psi x) = sum x
    assert G.theta.item() == pytest.approx(0.7) and D.psi.item() == pytest.approx(-1.3)
    with pytest.raises(ValueError, match="real line"):
        build_models(DiracModelConfig(), (2,))


def test_init_is_seeded():
    def weights(seed):
        torch.manual_seed(seed)
        G, D = build_models(MlpConfig(width=8), (2,))
        return torch.cat([p.flatten() for p in [*G.parameters(), *D.parameters()]])

    assert torch.equal(weights(0), weights(0)) and not torch.equal(weights(0), weights(1))


def _top_singular_values(model):
    out = []
    for m in model.modules():
        if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
            w = m.weight.detach()
            out.append(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item())
    return out


@pytest.mark.parametrize("cfg, shape", [(MlpConfig(width=32), (2,)), (DcganConfig(channels=8), (1, 8, 8))])
def test_spectral_norm_bounds_top_singular_value(cfg, shape):
    G, D = build_models(cfg, shape, spectral_norm="d")
    x = torch.randn(16, *shape)
    for _ in range(20):  # power iteration advances on each training-mode forward pass
        D(x)
    sigmas = _top_singular_values(D)
    assert sigmas and all(abs(s - 1.0) < 0.05 for s in sigmas)
    assert _top_singular_values(G) == []
    G2, _ = build_models(cfg, shape, spectral_norm="both")
    assert _top_singular_values(G2)
    D_plain = build_models(cfg, shape)[1]
    assert _top_singular_values(D_plain) == []
