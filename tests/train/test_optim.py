"""The packed optimisers are torch's, lane by lane: every lane of a ``PackedOptimizer`` (each with its own learning
rate, betas, momentum, alpha) takes the steps ``torch.optim.Adam`` / ``SGD`` / ``RMSprop`` take on that lane's
parameters alone with the same hyper-parameters and gradients (torch's defaults otherwise: eps, no weight decay,
no dampening, no Nesterov, not centred), parameters and optimiser state alike. A lane masked inactive for a step
is left exactly as it was, its step count included, so that when it is active again it goes on as torch does
for a parameter that simply was not stepped. ``state_dict`` mid-run continues bit for bit.

The comparisons run in float64, so torch and the pack agree to rounding (~1e-16 relative) and even a slip of
Adam's eps (1e-8, against gradients as small as 1e-8 here) is far outside the tolerance; float32 cases check
the trainer's dtype against torch at float32 rounding, torch given the pack's float32 hyper-parameters or the
config's own Python floats.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from ganlab.train.optim import FlatPlayer, PackedOptimizer

STEPS = 8
SHAPES = ((3, 2), (4,), (1,))  # the lane's parameters: one (L, 3, 2), one (L, 4), one (L, 1) tensor

# Every lane different in every hyper-parameter, the defaults of torch and of the GAN papers among them.
LR = [1e-3, 3e-2, 1e-1, 5e-3]
HYPER = {
    "adam": {"betas": [(0.5, 0.9), (0.0, 0.99), (0.9, 0.999), (0.8, 0.95)]},
    "sgd": {"momentum": [0.0, 0.5, 0.9, 0.99]},
    "rmsprop": {"alpha": [0.99, 0.9, 0.5, 0.95], "momentum": [0.0, 0.5, 0.0, 0.9]},
}
LANES = len(LR)

# Which lanes step at each of the STEPS steps: lane 0 always; lane 1 only from step 2 on (its first step is a
# late one); lane 2 pauses at steps 3 and 4 and resumes; lane 3 sits out the last step.
ALL_ACTIVE = [[True] * LANES for _ in range(STEPS)]
PAUSES = [[True, s >= 2, s not in (3, 4), s != STEPS - 1] for s in range(STEPS)]

# rtol, and atol per unit of the largest entry of the tensor compared (a momentum buffer sums terms of either sign:
# an entry that nearly cancels keeps the rounding of its terms, a few ulps of the tensor's scale, not of its own).
# Measured worst cases: float64 0.006 of this allowance, float32 0.38 (4 ulps of the scale; 1e-7 would leave
# RMSprop's momentum buffer at 0.998 of it).
TIGHT = {torch.float64: (1e-12, 1e-15), torch.float32: (1e-6, 5e-7)}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    rtol, atol = TIGHT[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * max(1.0, expected.abs().max().item()),
                               msg=lambda m: f"{what}: {m}")


class Lanes(nn.Module):
    """A packed module as the pack's nets are: parameters with the lane dimension first."""

    def __init__(self, values: list[torch.Tensor]):
        super().__init__()
        self.ps = nn.ParameterList([nn.Parameter(v.clone()) for v in values])


def initial(dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(LANES, *s, generator=g, dtype=torch.float64).to(dtype) for s in SHAPES]


def gradients(dtype: torch.dtype, seed: int = 1) -> list[list[torch.Tensor]]:
    """STEPS steps of gradients, one (L, *shape) tensor per parameter, of scales from 1e-8 to 10 (so eps
    matters for some entries and not for others), with some exact zeros."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(STEPS):
        step = []
        for s in SHAPES:
            scale = 10.0 ** torch.empty(LANES, *s, dtype=torch.float64).uniform_(-8, 1, generator=g)
            value = torch.randn(LANES, *s, generator=g, dtype=torch.float64) * scale
            value[torch.rand(LANES, *s, generator=g) < 0.1] = 0.0
            step.append(value.to(dtype))
        out.append(step)
    return out


def settings(kind: str, dtype: torch.dtype) -> dict[str, list]:
    """Each lane's hyper-parameters as Python floats, rounded to ``dtype`` as the pack holds them (its (L,)
    tensors are of the parameters' dtype), so that torch and the pack apply one set of numbers."""
    rounded = lambda v: torch.tensor(v, dtype=dtype).tolist()  # noqa: E731
    return {"lr": rounded(LR), **{k: [tuple(x) if isinstance(x, list) else x for x in rounded(v)]
                                  for k, v in HYPER[kind].items()}}


def hyper(kind: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=dtype) for k, v in settings(kind, dtype).items()}


def packed(kind: str, dtype: torch.dtype, values: list[torch.Tensor] | None = None):
    module = Lanes(values if values is not None else initial(dtype))
    player = FlatPlayer(module, LANES)
    return module, player, PackedOptimizer(player, kind, **hyper(kind, dtype))


def torch_lane(kind: str, lane: int, dtype: torch.dtype, given: torch.dtype):
    """Lane ``lane`` as plain tensors under torch's own optimiser, with the lane's hyper-parameters (rounded to
    ``given``)."""
    params = [nn.Parameter(v[lane].clone()) for v in initial(dtype)]
    own = {k: v[lane] for k, v in settings(kind, given).items()}
    if kind == "adam":
        opt = torch.optim.Adam(params, lr=own["lr"], betas=own["betas"], foreach=False)
    elif kind == "sgd":
        opt = torch.optim.SGD(params, lr=own["lr"], momentum=own["momentum"], foreach=False)
    else:
        opt = torch.optim.RMSprop(params, lr=own["lr"], alpha=own["alpha"], momentum=own["momentum"], foreach=False)
    return params, opt


def backward(module: Lanes, player: FlatPlayer, grads: list[torch.Tensor]) -> None:
    """The gradients through autograd into the player's buffer, as the trainer's backward passes put them."""
    player.zero_grad()
    sum((p * g).sum() for p, g in zip(module.ps, grads)).backward()


def state_names(kind: str, lane: int) -> list[str]:
    """The packed state torch keeps for this lane (torch keeps no momentum buffer for momentum 0)."""
    if kind == "adam":
        return ["exp_avg", "exp_avg_sq"]
    names = ["square_avg"] if kind == "rmsprop" else []
    return names + (["momentum_buffer"] if HYPER[kind]["momentum"][lane] > 0 else [])


def flat_state(opt: torch.optim.Optimizer, params: list[nn.Parameter], name: str) -> torch.Tensor:
    return torch.cat([opt.state[p][name].reshape(-1) for p in params])


def assert_lane_is_torchs(kind, lane, player, opt, ref_params, ref_opt, dtype, active_steps, skip=()):
    assert_close(player.flat[lane], torch.cat([p.detach().reshape(-1) for p in ref_params]), dtype,
                 f"{kind} lane {lane} parameters")
    assert opt.steps[lane].item() == active_steps, f"{kind} lane {lane} step count"
    if active_steps == 0:
        return
    if kind != "sgd":  # torch's SGD keeps no step count
        assert float(ref_opt.state[ref_params[0]]["step"]) == active_steps
    for name in [n for n in state_names(kind, lane) if n not in skip]:
        assert_close(opt.state[name][lane], flat_state(ref_opt, ref_params, name), dtype, f"{kind} lane {lane} {name}")


def run_against_torch(kind: str, dtype: torch.dtype, masks: list[list[bool]], given: torch.dtype | None = None,
                      skip: tuple[str, ...] = ()) -> None:
    """The pack against torch, step by step; torch's optimisers get the hyper-parameters rounded to ``given`` (by
    default to ``dtype``, as the pack holds them). ``skip``: optimiser state not compared."""
    module, player, opt = packed(kind, dtype)
    refs = [torch_lane(kind, lane, dtype, given or dtype) for lane in range(LANES)]
    counts = [0] * LANES
    for grads, mask in zip(gradients(dtype), masks):
        backward(module, player, grads)
        before_flat = player.flat.clone()
        before_state = {k: v.clone() for k, v in opt.state.items()}
        opt.step(torch.tensor(mask))
        for lane, (params, ref) in enumerate(refs):
            if mask[lane]:
                for p, g in zip(params, grads):
                    p.grad = g[lane].clone()
                ref.step()
                counts[lane] += 1
            else:  # untouched, bit for bit: parameters and every state tensor
                assert torch.equal(player.flat[lane], before_flat[lane]), f"{kind}: inactive lane {lane} moved"
                for name, value in opt.state.items():
                    assert torch.equal(value[lane], before_state[name][lane]), f"{kind}: inactive lane {lane} {name}"
            assert_lane_is_torchs(kind, lane, player, opt, params, ref, dtype, counts[lane], skip)
    # the modules' parameters are views of the flat tensor: the net computes with what the optimiser wrote
    assert all(p.untyped_storage().data_ptr() == player.flat.untyped_storage().data_ptr() for p in module.ps)
    torch.testing.assert_close(torch.cat([p.detach().reshape(LANES, -1) for p in module.ps], 1), player.flat, rtol=0,
                               atol=0)


@pytest.mark.parametrize("kind", list(HYPER))
def test_every_lane_steps_as_torch_optim_with_its_own_hyper_parameters(kind):
    run_against_torch(kind, torch.float64, ALL_ACTIVE)


@pytest.mark.parametrize("kind", list(HYPER))
def test_an_inactive_lane_is_untouched_and_resumes_as_torch_would(kind):
    run_against_torch(kind, torch.float64, PAUSES)


@pytest.mark.parametrize("kind", list(HYPER))
def test_float32_lanes_step_as_torch_optim_at_float32_rounding(kind):
    # the trainer's dtype, its hyper-parameters float32 tensors (torch gets the same float32-rounded values)
    run_against_torch(kind, torch.float32, PAUSES)


@pytest.mark.parametrize("kind", list(HYPER))
def test_float32_lanes_step_as_torch_optim_given_the_configs_own_values(kind):
    # what a trial config says (betas (0.9, 0.999), alpha 0.99) given to torch as the Python floats it is, against
    # the pack's float32 copy of it (lanes.Hyper): the parameters agree at float32 rounding. Adam's second moment
    # itself does not: the pack forms 1 - beta2 from float32(0.999) (0.00099998713, 1.3e-5 relative off 0.001),
    # torch from the Python float, so exp_avg_sq differs by that factor, which the bias correction, formed from
    # the same float32 beta2, cancels in the step.
    run_against_torch(kind, torch.float32, PAUSES, given=torch.float64, skip=("exp_avg_sq",))


@pytest.mark.parametrize("kind", list(HYPER))
def test_state_dict_mid_run_continues_bit_for_bit(kind):
    dtype, grads = torch.float64, gradients(torch.float64)
    module, player, opt = packed(kind, dtype)
    half = STEPS // 2
    for g, mask in zip(grads[:half], PAUSES[:half]):
        backward(module, player, g)
        opt.step(torch.tensor(mask))
    written = opt.state_dict()  # lane 1 has had 2 of its steps, lane 2 is paused mid-run (steps 3 and 4)
    kept = copy.deepcopy(written)
    buffer = io.BytesIO()
    torch.save(written, buffer)  # as a checkpoint holds it, read back as checkpoints are
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    # a fresh optimiser over a fresh module (other initial values), given the weights and the optimiser state
    module2, player2, opt2 = packed(kind, dtype, initial(dtype, seed=99))
    with torch.no_grad():
        player2.flat.copy_(player.flat)
    opt2.load_state_dict(saved)
    for g, mask in zip(grads[half:], PAUSES[half:]):
        for m, p in ((module, player), (module2, player2)):
            backward(m, p, g)
        opt.step(torch.tensor(mask))
        opt2.step(torch.tensor(mask))
        assert torch.equal(player2.flat, player.flat)
    assert torch.equal(opt2.steps, opt.steps)
    assert all(torch.equal(opt2.state[k], opt.state[k]) for k in opt.state)
    # the state dicts are copies: stepping on changed neither the one written nor the one loaded
    for state in (written, saved):
        assert state.keys() == kept.keys() and all(torch.equal(state[k], kept[k]) for k in kept)
    assert not torch.equal(kept["steps"], opt.steps)


def test_an_unknown_kind_is_refused():
    module = Lanes(initial(torch.float64))
    with pytest.raises(ValueError, match="adagrad"):
        PackedOptimizer(FlatPlayer(module, LANES), "adagrad", torch.tensor(LR))
