import pytest
import torch
from torch import nn

from ganlab.config import DcganConfig, DiracModelConfig, MlpConfig
from ganlab.train.models import build_models


def _out(G, D, n=5):
    x = G(torch.randn(n, G.latent_dim))
    return x, D(x)


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8), (3, 8, 8)])
def test_mlp_shapes(shape):
    G, D = build_models(MlpConfig(width=16, depth=2, latent_dim=3), shape)
    assert G.latent_dim == 3
    x, d = _out(G, D)
    assert x.shape == (5, *shape) and d.shape == (5,)
    assert D(torch.randn(7, *shape)).shape == (7,)
    assert _count(D, nn.Sigmoid) == 0  # raw logits: the losses apply any sigmoid


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 16, 16)])
def test_dcgan_shapes_and_range(shape):
    G, D = build_models(DcganConfig(channels=8, latent_dim=4), shape)
    assert G.latent_dim == 4
    x, d = _out(G, D)
    assert x.shape == (5, *shape) and d.shape == (5,)
    assert x.abs().max() <= 1.0  # tanh output, like data scaled to [-1, 1]
    assert _count(D, nn.Sigmoid) == 0


def test_dcgan_layout():
    G, D = build_models(DcganConfig(channels=32, latent_dim=5), (3, 8, 8))
    seed = next(m for m in G.modules() if isinstance(m, nn.Linear))
    assert (seed.in_features, seed.out_features) == (5, 64 * 4 * 4)  # c0 = 32 * 8 // 4
    ups = [(m.in_channels, m.out_channels) for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups == [(64, 32)]
    assert [m.out_channels for m in G.modules() if isinstance(m, nn.Conv2d)] == [3]
    assert [(m.in_channels, m.out_channels) for m in D.modules() if isinstance(m, nn.Conv2d)] == [(3, 32), (32, 64)]
    assert _count(D, (nn.BatchNorm1d, nn.BatchNorm2d)) == 0
    assert _count(D, nn.LeakyReLU) == 2
    G, D = build_models(DcganConfig(channels=4), (1, 32, 32))
    assert _count(G, nn.ConvTranspose2d) == 3 and _count(D, nn.Conv2d) == 4  # log2(32 / 4) blocks


@pytest.mark.parametrize("shape", [(1, 8, 12), (1, 6, 6), (2,), (1, 2, 2), (8, 8)])
def test_dcgan_rejects_unsupported_shapes(shape):
    with pytest.raises(ValueError, match="dcgan"):
        build_models(DcganConfig(), shape)


@pytest.mark.parametrize("name, kind", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU),
                                        ("tanh", nn.Tanh)])
def test_mlp_activation(name, kind):
    G, D = build_models(MlpConfig(width=8, depth=3, activation=name), (2,))
    others = tuple({nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh} - {kind})
    for model in (G, D):
        assert _count(model, kind) == 3 and _count(model, others) == 0
    if kind is nn.LeakyReLU:
        assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))


@pytest.mark.parametrize("norm, norm_d", [("none", "none"), ("batch", "layer"), ("layer", "none")])
def test_mlp_norm(norm, norm_d):
    G, D = build_models(MlpConfig(width=8, depth=2, norm=norm, norm_d=norm_d), (2,))
    assert _count(G, nn.BatchNorm1d) == (2 if norm == "batch" else 0)
    assert _count(G, nn.LayerNorm) == (2 if norm == "layer" else 0)
    assert _count(D, nn.LayerNorm) == (2 if norm_d == "layer" else 0)
    assert _count(D, nn.BatchNorm1d) == 0
    assert _count(G, nn.Linear) == 3 and _count(D, nn.Linear) == 3  # depth hidden layers + output


def test_dirac_values_and_gradients():
    G, D = build_models(DiracModelConfig(theta0=0.7, psi0=-1.3), (1,))
    theta0, psi0 = torch.tensor(0.7), torch.tensor(-1.3)
    assert torch.equal(G.theta.detach(), theta0) and torch.equal(D.psi.detach(), psi0)
    for z in (torch.randn(4, 1), torch.full((4, 1), 100.0), torch.zeros(3, 1)):
        assert torch.equal(G(z), theta0.expand(len(z), 1))
    x = torch.tensor([[2.0], [-1.0], [0.5]])
    out = D(x)
    assert out.shape == (3,) and torch.allclose(out, psi0 * x[:, 0])
    for i in range(len(x)):  # each output's derivative in psi is its own input
        (g,) = torch.autograd.grad(D(x)[i], D.linear.weight)
        assert g.item() == pytest.approx(x[i].item())
    (g_theta,) = torch.autograd.grad(D(G(torch.randn(4, 1))).sum(), G.theta)
    assert g_theta.item() == pytest.approx(4 * -1.3)  # d/dtheta sum(psi * theta)
    with pytest.raises(ValueError, match="real line"):
        build_models(DiracModelConfig(), (2,))


@pytest.mark.parametrize("cfg, shape", [(MlpConfig(width=8), (2,)), (DcganConfig(channels=4), (1, 8, 8))])
def test_init_is_seeded(cfg, shape):
    def weights(seed):
        torch.manual_seed(seed)
        G, D = build_models(cfg, shape)
        return torch.cat([p.flatten() for p in [*G.parameters(), *D.parameters()]])

    assert torch.equal(weights(0), weights(0)) and not torch.equal(weights(0), weights(1))


def _top_singular_values(model):
    out = []
    for m in model.modules():
        if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
            w = m.weight.detach()
            if isinstance(m, nn.ConvTranspose2d):  # output channels are dim 1: spectral_norm uses dim=1 here
                w = w.transpose(0, 1)
            out.append(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item())
    return out


def _warm_up(model, shape):
    x = torch.randn(16, *shape)
    for _ in range(20):  # power iteration advances on each training-mode forward pass
        model(x)


@pytest.mark.parametrize("cfg, shape, n_d, n_g", [
    (MlpConfig(width=32), (2,), 4, 4),
    (MlpConfig(width=16, depth=2), (1, 8, 8), 3, 3),
    (DcganConfig(channels=8), (1, 8, 8), 3, 3),
    (DcganConfig(channels=4, latent_dim=8), (3, 16, 16), 4, 4),
])
def test_spectral_norm_bounds_top_singular_value(cfg, shape, n_d, n_g):
    torch.manual_seed(0)
    G, D = build_models(cfg, shape, spectral_norm="d")
    _warm_up(D, shape)
    sigmas = _top_singular_values(D)
    assert len(sigmas) == n_d and all(abs(s - 1.0) < 0.05 for s in sigmas), sigmas
    assert _top_singular_values(G) == []

    G2, D2 = build_models(cfg, shape, spectral_norm="both")
    _warm_up(G2, (G2.latent_dim,))
    sigmas = _top_singular_values(G2)
    assert len(sigmas) == n_g and all(abs(s - 1.0) < 0.05 for s in sigmas), sigmas
    assert len(_top_singular_values(D2)) == n_d

    G3, D3 = build_models(cfg, shape)
    assert _top_singular_values(G3) == [] and _top_singular_values(D3) == []


def test_spectral_norm_dirac_and_bad_value():
    G, D = build_models(DiracModelConfig(psi0=3.0), (1,), spectral_norm="both")
    assert D.psi.abs().item() == pytest.approx(1.0) and G.theta.item() == 1.0
    with pytest.raises(ValueError, match="spectral_norm"):
        build_models(MlpConfig(), (2,), spectral_norm="D")


@pytest.mark.parametrize("cfg, shape, width", [
    (MlpConfig(width=32, depth=2), (2,), 32),
    (DcganConfig(latent_dim=8, channels=8), (1, 8, 8), 16 * 16),  # one stride-2 block: 16 channels of 4x4
    (DiracModelConfig(), (1,), 1),
])
def test_d_features_are_what_its_last_layer_reads(cfg, shape, width):
    torch.manual_seed(0)
    _, D = build_models(cfg, shape)
    x = torch.randn(5, *shape)
    features = D.features(x)
    assert features.shape == (5, width)
    last = D.net[-1] if hasattr(D, "net") else D.linear
    assert torch.allclose(last(features).reshape(5), D(x))  # penultimate: one linear map from D's output
