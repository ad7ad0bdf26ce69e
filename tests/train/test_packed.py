"""Packing changes speed, never results: every lane of a pack logs what its trial logs alone.

Each case packs three trials that differ in everything a lane may own (seed, learning rates, betas/momentum/alpha,
regularizer strengths, G's EMA, the Dirac start) and compares every lane's logged metrics over ITERATIONS with the
same trial run alone (a pack of one). The two runs draw the same random numbers (a lane's streams depend only on
its seed) and do the same arithmetic, except that batched kernels (``baddbmm``, grouped convolutions) sum in a
different order than a single model's: float32 rounding, ~1e-7 relative per operation. Any real difference
between lanes (a wrong lane's weights, a shared random number, a hyper-parameter applied to the wrong lane) moves
the metrics by 1e-2 or more within a few steps; rounding stays below these allowances:

- TOLERANCE (1e-4) for losses, logits and parameter norms: measured at most 5e-6 over 60 iterations, with one
  torch thread or two, on two CPUs. GAN training is a feedback loop, so the difference grows: on a Xeon with
  AVX-512 and AMX the WGAN-GP lane with spectral norm went from 3e-6 at step 120 to 8e-4 at 200 (x10 per 20
  steps), which an earlier CPU never showed; so the window is 60 iterations, before any lane amplifies rounding.
- AMPLIFIED (1e-3) for figures that magnify a rounding difference by construction. Gradient and update norms sum
  per-sample contributions through (leaky) ReLUs: a pre-activation within rounding of 0 takes the other slope
  for that sample and unit, a jump of ~1/(B x width) for that step (measured: grad/g 3.3e-4 at one step of the
  batch-norm case with one thread, 1e-5 the step after, and eval/sliced_w 5.7e-5 at the next eval). The
  periodicity p-values are computed from the window's residuals, which in a calm lane are ~1e-4 of the loss's
  level, so a 1e-8 relative difference in the losses becomes ~1e-4 (measured 1.2e-4).
- FLIPS / B for figures that threshold or rank logits (accuracies, AUCs and what is computed from them): a
  sample's logit within rounding of the threshold flips its decision (1/B), two logits within rounding of each
  other swap an AUC pair (1/B^2; measured 1 pair at step 80 of the batch-norm case with one thread).
- Discrete eval figures (modes covered) are compared exactly at the first eval.

The agreement holds while the dynamics are not chaotic: in a lane whose small differences grow exponentially
(simultaneous minimax with batch norm at lr_g 2e-3 and a 4x slower D swings its AUC between 0.1 and 0.8), a
1e-8 difference becomes 1e-4 within 40 iterations, as it would between two machines or two torch versions.
The cases use settings whose trajectories are stable over the iterations compared.

Layers before batch norm have no bias: batch norm removes it, so its true gradient is 0 and under Adam's
normalised steps it random-walks on rounding noise, a 1e-4 drift of G's parameter norm in 200 steps that
changes nothing but makes equal runs differ; without it batch-norm models agree like the others.

A pack of one shares every kernel with a pack of three, so these cases cannot see a packed layer that computes
the wrong function in every pack alike: the second half of this file compares each packed layer (and PackedNet)
with torch's own modules, lane by lane, in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganlab.config import DcganConfig, MlpConfig, apply_overrides, parse_trial
from ganlab.train.lanes import check_packable, pack_shape
from ganlab.train.models import build_models
from ganlab.train.packed import (PackedBatchNorm, PackedConv, PackedLayerNorm, PackedLinear, PackedNet, lane_state,
                                 stack_states)
from ganlab.train.trainer import Trainer

ITERATIONS = 60
TOLERANCE = 1e-4  # relative (and absolute, near 0) deviation of any lane metric from its solo run
AMPLIFIED = 1e-3  # the same for figures that magnify rounding: gradient and update norms, eval figures, p-values
FLIPS = 2  # samples whose real/fake decision may flip on rounding, per logged accuracy figure

BASE = {"device": "cpu", "data": {"name": "ring8", "batch_size": 32}, "model": {"width": 16, "depth": 2},
        "train": {"steps": ITERATIONS, "log_every": 10, "eval_every": 30, "eval_samples": 256}}

# What each lane owns: three lanes per case, every per-lane key different in each.
LANES = [
    {"seed": 1, "optim.lr_g": 1e-3, "optim.lr_ratio": 1.0},
    {"seed": 2, "optim.lr_g": 5e-4, "optim.lr_ratio": 4.0},
    {"seed": 3, "optim.lr_g": 2e-3, "optim.lr_ratio": 0.25},
]

CASES = {
    "mlp, non-saturating, adam": ({}, [{"optim.betas": (0.5, 0.999)}, {"optim.betas": (0.0, 0.9)},
                                       {"optim.betas": (0.9, 0.99), "optim.betas_d": (0.5, 0.9)}]),
    "mlp batch norm in G, minimax, simultaneous": (
        {"model.norm": "batch", "loss.name": "minimax", "schedule.mode": "simultaneous"},
        [{}, {}, {"optim.lr_g": 1e-3}]),  # at lr 2e-3 this lane is chaotic from step ~140: see above
    "mlp layer norm G and D, hinge, R1": (
        {"model.norm": "layer", "model.norm_d": "layer", "loss.name": "hinge"},
        [{"regularizer.r1": 0.1}, {"regularizer.r1": 1.0}, {"regularizer.r1": 10.0}]),
    "least squares, R2, instance noise, d_steps 2": (
        {"loss.name": "least_squares", "schedule.d_steps": 2},
        [{"regularizer.r2": 0.5, "regularizer.instance_noise": 0.1},
         {"regularizer.r2": 1.0, "regularizer.instance_noise": 0.3, "regularizer.instance_noise_anneal": 30},
         {"regularizer.r2": 2.0, "regularizer.instance_noise": 0.0}]),
    "wgan (clip), rmsprop, g_steps 2, g first": (
        {"loss": {"name": "wgan"}, "optim.name": "rmsprop", "schedule.g_steps": 2, "schedule.order": "g_first"},
        [{"loss.clip": 0.01, "optim.alpha": 0.99}, {"loss.clip": 0.05, "optim.alpha": 0.9},
         {"loss.clip": 0.1, "optim.alpha": 0.5, "optim.momentum": 0.5}]),
    "wgan-gp, spectral norm on both, G's EMA": (
        {"loss": {"name": "wgan_gp"}, "regularizer.spectral_norm": "both"},
        [{"loss.gp_weight": 10.0, "optim.g_ema": 0.99}, {"loss.gp_weight": 1.0, "optim.g_ema": 0.9},
         {"loss.gp_weight": 5.0, "loss.gp_center": 0.0, "optim.g_ema": 0.0}]),
    "sgd with momentum, spectral norm on D": (
        {"optim.name": "sgd", "regularizer.spectral_norm": "d"},
        [{"optim.momentum": 0.0}, {"optim.momentum": 0.5}, {"optim.momentum": 0.9}]),
    "dcgan with batch norm on digits": (
        {"data": {"name": "digits", "batch_size": 16}, "model": {"name": "dcgan", "channels": 4, "latent_dim": 8},
         "train.eval_samples": 128},
        [{}, {"regularizer.r1": 1.0}, {"optim.g_ema": 0.9}]),
    "dirac, alternating sgd, R1": (
        {"data": {"name": "dirac"}, "model": {"name": "dirac"}, "optim.name": "sgd", "loss.name": "minimax"},
        [{"model.theta0": 1.0, "model.psi0": -1.0, "regularizer.r1": 0.3},
         {"model.theta0": 0.5, "model.psi0": 0.2, "regularizer.r1": 0.0},
         {"model.theta0": -1.0, "model.psi0": 1.0, "regularizer.r1": 1.0}]),
}

DISCRETE = ("eval/modes",)


def trials(shape: dict, lanes: list[dict]):
    base = apply_overrides(BASE, shape) if shape else parse_trial(BASE)
    return [apply_overrides(base.model_dump(mode="json"), {**common, **own}) for common, own in zip(LANES, lanes)]


def deviation(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    return abs(a - b) / max(1.0, abs(b))


def allowed(metric: str, batch_size: int) -> float:
    if "acc" in metric or "auc" in metric:  # an AUC ranks real against fake logits: a flip moves pairs
        return FLIPS / batch_size
    if metric.startswith(("grad/", "update/", "eval/")) or metric.endswith("_period_p"):
        return AMPLIFIED
    return TOLERANCE


@pytest.mark.parametrize("case", list(CASES))
def test_every_lane_logs_what_its_trial_logs_alone(case):
    cfgs = trials(*CASES[case])
    check_packable(cfgs)
    assert len({pack_shape(c) for c in cfgs}) == 1
    packed = [[lane for lane in report.lanes] for report in Trainer(cfgs).run_pack()]
    for lane, cfg in enumerate(cfgs):
        alone = list(Trainer(cfg).run())
        mine = [step[lane] for step in packed]
        assert [r.step for r in mine] == [r.step for r in alone]
        assert set(mine[0].metrics) == set(alone[0].metrics)
        b = cfg.data.batch_size
        worst = max(((deviation(m.metrics[k], a.metrics[k]) / allowed(k, b), k, m.step)
                     for m, a in zip(mine, alone) for k in a.metrics if k not in DISCRETE), default=(0.0, "", 0))
        assert worst[0] <= 1, f"lane {lane}: {worst[1]} at step {worst[2]} is {worst[0]:.2f} of its tolerance"
        first_eval = next(i for i, r in enumerate(alone) if r.evaluated)
        for k in DISCRETE:
            if k in alone[first_eval].metrics:
                assert mine[first_eval].metrics[k] == alone[first_eval].metrics[k], k


def test_lanes_do_not_depend_on_their_neighbours():
    # The same trial in two different packs (other seeds, other learning rates beside it) logs the same numbers:
    # nothing a lane draws or computes depends on which trials share its pack.
    a, b, c = trials({}, [{}, {}, {}])
    first = [r.lanes[0].metrics for r in Trainer([a, b]).run_pack()]
    second = [r.lanes[1].metrics for r in Trainer([c, a]).run_pack()]
    for x, y in zip(first, second):
        assert max(deviation(x[k], y[k]) / allowed(k, a.data.batch_size) for k in x) <= 1


def test_trials_of_different_shapes_are_refused_with_the_keys_that_differ():
    a = parse_trial(BASE)
    b = apply_overrides(BASE, {"schedule.d_steps": 2, "model.width": 32})
    with pytest.raises(ValueError, match=r"model\.width, schedule\.d_steps"):
        Trainer([a, b])


# --- each packed layer is torch's layer, lane by lane -------------------------------------------------------------
#
# The cases above compare a pack with packs of one, which share every kernel: a layer that computed the wrong
# function in every pack alike would pass them. Here each packed layer meets L torch modules of DIFFERENT random
# weights (its lanes, stacked into it as PackedNet stacks them), in float64 so that the only difference is the
# order of summation (~1e-16): the forward output, the gradients with respect to the input and to every weight,
# the running statistics of batch norm after train-mode batches and its eval-mode output, and for spectral norm
# (torch's parametrization, each lane its own module with its own u, v) the u, v after train-mode power
# iterations, the normalised weight and the eval-mode output.

LAYER_LANES = 3
BATCH = 5
TRAIN_BATCHES = 4  # train-mode forward passes: running stats and power iterations advance at each
CLOSE = {"rtol": 1e-10, "atol": 1e-12}


def lane_modules(make, spectral: bool = False, lanes: int = LAYER_LANES) -> list[nn.Module]:
    """``lanes`` torch modules from ``make()``, each with its own random weights (and running statistics), float64,
    spectrally normalised by torch's parametrization after that (its u, v drawn per lane)."""
    singles = []
    for lane in range(lanes):
        torch.manual_seed(1000 + lane)  # the autouse torch_state fixture restores the global generator
        m = make()
        with torch.no_grad():
            for p in m.parameters():
                p.normal_(0.0, 0.5)
            for name, b in m.named_buffers():
                if name.endswith("running_mean"):
                    b.normal_(0.0, 1.0)
                elif name.endswith("running_var"):
                    b.uniform_(0.5, 2.0)
        m = m.double()
        singles.append(spectral_norm(m) if spectral else m)
    return singles


def packed_of(packed: nn.Module, singles: list[nn.Module]) -> nn.Module:
    """The packed layer holding the lanes' weights, as PackedNet loads them (float64 first: loading keeps dtypes)."""
    packed = packed.double()
    packed.load_state_dict(stack_states(singles))
    return packed


FEATURES = (lambda t: list(t.unbind(0)), lambda ts: torch.stack(ts, 0))  # (L, B, ...): lane l is t[l]
MAPS = (lambda t: list(t.chunk(LAYER_LANES, 1)), lambda ts: torch.cat(ts, 1))  # (B, L * C, H, W), lane-major


def assert_lanes(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, **CLOSE, msg=lambda m: f"{what}: {m}")


def assert_same_state(packed: nn.Module, singles: list[nn.Module], what: str) -> None:
    expected = stack_states(singles)
    state = packed.state_dict()
    assert state.keys() == expected.keys()
    for k, v in expected.items():
        assert_lanes(state[k].to(v.dtype), v, f"{what}: {k}")


def forward_backward(packed: nn.Module, singles: list[nn.Module], x: torch.Tensor, layout, seed: int) -> None:
    """One forward and backward pass of the pack and of every lane's module on that lane's slice of x, with a random
    upstream gradient: outputs, input gradients and every parameter's gradient agree lane by lane."""
    split, join = layout
    for m in (packed, *singles):
        m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    xs = [xi.detach().clone().requires_grad_(True) for xi in split(x)]
    out = packed(x)
    outs = [m(xi) for m, xi in zip(singles, xs)]
    assert_lanes(out, join(outs), "output")
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (out * upstream).sum().backward()
    sum((o * u).sum() for o, u in zip(outs, split(upstream))).backward()
    assert_lanes(x.grad, join([xi.grad for xi in xs]), "gradient of the input")
    names = [n for n, _ in packed.named_parameters()]
    assert names == [n for n, _ in singles[0].named_parameters()]
    for name, p in packed.named_parameters():
        expected = torch.stack([dict(m.named_parameters())[name].grad for m in singles])
        assert_lanes(p.grad, expected, f"gradient of {name}")


def inputs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def train_then_eval(packed: nn.Module, singles: list[nn.Module], shape: tuple[int, ...], layout) -> None:
    """TRAIN_BATCHES train-mode passes (state compared after each), then the eval-mode output."""
    assert_same_state(packed, singles, "as loaded")
    for i in range(TRAIN_BATCHES):
        forward_backward(packed.train(), [m.train() for m in singles], inputs(shape, i), layout, seed=100 + i)
        assert_same_state(packed, singles, f"after train batch {i}")
    packed.eval()
    for m in singles:
        m.eval()
    with torch.no_grad():
        x = inputs(shape, 99)
        split, join = layout
        assert_lanes(packed(x), join([m(xi) for m, xi in zip(singles, split(x))]), "eval output")
    assert_same_state(packed, singles, "after eval")  # eval mode moves no statistic, no power iteration


@pytest.mark.parametrize("n_in, n_out, bias", [(5, 7, True), (5, 7, False), (6, 6, True)])
def test_packed_linear_is_torchs_linear_lane_by_lane(n_in, n_out, bias):
    singles = lane_modules(lambda: nn.Linear(n_in, n_out, bias=bias))
    packed = packed_of(PackedLinear(LAYER_LANES, singles[0], False), singles)
    for i in range(2):
        forward_backward(packed, singles, inputs((LAYER_LANES, BATCH, n_in), i), FEATURES, seed=i)


CONVS = {
    "conv2d 3x3 same": lambda: nn.Conv2d(3, 5, 3, padding=1),
    "conv2d 4x4 stride 2 (DCGAN D)": lambda: nn.Conv2d(4, 6, 4, 2, 1),
    "conv-transpose 4x4 stride 2 (DCGAN G)": lambda: nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False),
    "conv-transpose with bias": lambda: nn.ConvTranspose2d(4, 3, 4, 2, 1),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_packed_conv_is_torchs_conv_lane_by_lane(case):
    singles = lane_modules(CONVS[case])
    packed = packed_of(PackedConv(LAYER_LANES, singles[0], False), singles)
    c_in = singles[0].in_channels
    for i in range(2):
        forward_backward(packed, singles, inputs((BATCH, LAYER_LANES * c_in, 6, 6), i), MAPS, seed=i)


@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.3, 1e-2)])
def test_packed_batch_norm_1d_is_torchs_lane_by_lane(momentum, eps):
    singles = lane_modules(lambda: nn.BatchNorm1d(4, momentum=momentum, eps=eps))
    packed = packed_of(PackedBatchNorm(LAYER_LANES, singles[0], maps=False), singles)
    train_then_eval(packed, singles, (LAYER_LANES, BATCH, 4), FEATURES)


@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.3, 1e-2)])
def test_packed_batch_norm_2d_is_torchs_lane_by_lane(momentum, eps):
    singles = lane_modules(lambda: nn.BatchNorm2d(3, momentum=momentum, eps=eps))
    packed = packed_of(PackedBatchNorm(LAYER_LANES, singles[0], maps=True), singles)
    train_then_eval(packed, singles, (BATCH, LAYER_LANES * 3, 4, 4), MAPS)


@pytest.mark.parametrize("eps", [1e-5, 1e-1])
def test_packed_layer_norm_is_torchs_lane_by_lane(eps):
    singles = lane_modules(lambda: nn.LayerNorm(6, eps=eps))
    packed = packed_of(PackedLayerNorm(LAYER_LANES, singles[0]), singles)
    for i in range(2):
        forward_backward(packed, singles, inputs((LAYER_LANES, BATCH, 6), i), FEATURES, seed=i)


SPECTRAL = {
    "linear": (lambda: nn.Linear(5, 7), PackedLinear, (LAYER_LANES, BATCH, 5), FEATURES),
    "linear square, no bias": (lambda: nn.Linear(6, 6, bias=False), PackedLinear, (LAYER_LANES, BATCH, 6), FEATURES),
    "conv2d": (lambda: nn.Conv2d(3, 5, 4, 2, 1), PackedConv, (BATCH, LAYER_LANES * 3, 6, 6), MAPS),
    "conv-transpose (dim 1)": (lambda: nn.ConvTranspose2d(6, 3, 4, 2, 1), PackedConv, (BATCH, LAYER_LANES * 6, 4, 4),
                               MAPS),
}


@pytest.mark.parametrize("case", list(SPECTRAL))
def test_packed_spectral_norm_is_torchs_parametrization_lane_by_lane(case):
    make, kind, shape, layout = SPECTRAL[case]
    singles = lane_modules(make, spectral=True)
    assert not torch.equal(singles[0].parametrizations.weight[0]._u, singles[1].parametrizations.weight[0]._u)
    packed = packed_of(kind(LAYER_LANES, singles[0], True), singles)
    train_then_eval(packed, singles, shape, layout)  # u, v after each power iteration; W / sigma in every output
    with torch.no_grad():  # in eval mode the normalised weight itself, without a further iteration
        assert_lanes(packed.current_weight(), torch.stack([m.weight for m in singles]), "normalised weight")
    assert_same_state(packed, singles, "after reading the weight in eval mode")


NETS = {
    "mlp, batch norm G, layer norm D": ({"name": "mlp", "width": 8, "depth": 2, "norm": "batch", "norm_d": "layer"},
                                        (2,), "none"),
    "dcgan (batch norm, conv-transpose, conv)": ({"name": "dcgan", "channels": 2, "latent_dim": 3}, (1, 8, 8), "none"),
    "dcgan, spectral norm on G and D": ({"name": "dcgan", "channels": 2, "latent_dim": 3}, (1, 8, 8), "both"),
}


@pytest.mark.parametrize("case", list(NETS))
def test_a_packed_net_is_its_lanes_models(case):
    """PackedNet over build_models' G and D, each lane its own seed: every lane's output, gradients, running stats and
    u, v are those of its own model (lane-major reshapes between flat and map layers included)."""
    model, shape, sn = NETS[case]
    cfg = MlpConfig.model_validate(model) if model["name"] == "mlp" else DcganConfig.model_validate(model)
    pairs = []
    for lane in range(LAYER_LANES):
        torch.manual_seed(lane)
        pairs.append(build_models(cfg, shape, sn))
    for singles, width in (([g for g, _ in pairs], cfg.latent_dim), ([d for _, d in pairs], None)):
        packed = PackedNet(singles).double()  # loaded in float32, as the trainer's, then both in float64
        singles = [s.double() for s in singles]
        for i in range(TRAIN_BATCHES):
            x = inputs((LAYER_LANES, BATCH, width) if width else (LAYER_LANES, BATCH, *shape), i)
            forward_backward(packed, singles, x, FEATURES, seed=i)
            assert_same_state(packed, singles, f"{case} after batch {i}")
        for i, lane in enumerate(singles):  # what a lane exports is its own model's state
            for k, v in lane_state(packed, i).items():
                assert_lanes(v.to(lane.state_dict()[k].dtype), lane.state_dict()[k], f"lane_state {i}: {k}")
