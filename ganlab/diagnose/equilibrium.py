"""Local equilibrium analysis: eigenvalues of the game's Jacobian (opt-in, costly, at eval steps).

The update field is v = (-grad_theta L_G, -grad_psi L_D) (each player descends its own loss). Near a
fixed point the dynamics follow its Jacobian J = dv/d(theta, psi): eigenvalues with negative real parts
attract, a large imaginary part means rotation (the players circle instead of settling). Matrix-vector
products J^T u come from autograd (Hessian-vector products, as facebookresearch/GAN-optimization-landscape
does); small games get the full matrix, large ones ARPACK's few extreme eigenvalues. Everything uses one
fixed batch, so the field is deterministic.

The game is passed in (``ganlab.train.evaluation.LaneGame``: one lane's single models with the objectives the
pack optimises) and read through its players ``G`` and ``D`` and three functions:
``discriminator_objective`` and ``generator_objective`` for the update field, ``value`` for the duality
gap, so these diagnostics analyse exactly the objectives that are optimised without knowing which loss
they are.
"""

from __future__ import annotations

import numpy as np
import torch


FULL_MATRIX_MAX_PARAMS = 1500  # build J explicitly up to this many parameters (n HVPs), else ARPACK


def update_field(game, real: torch.Tensor, z: torch.Tensor, rng_seed: int = 0) -> tuple[torch.Tensor, list]:
    """v(omega) as one flat tensor with its graph kept, and the parameters omega = (G's, D's)."""
    params = [p for p in game.G.parameters()] + [p for p in game.D.parameters()]
    for p in params:
        p.requires_grad_(True)
    n_g = len(list(game.G.parameters()))
    fake = game.G(z)  # not detached: D's gradient depends on theta through its inputs
    real_in = real.clone().requires_grad_(game.differentiates_real)
    loss_d, reg = game.discriminator_objective(real_in, fake, torch.Generator().manual_seed(rng_seed))
    loss_g = game.generator_objective(fake)
    grads_g = torch.autograd.grad(loss_g, params[:n_g], create_graph=True)
    grads_d = torch.autograd.grad(loss_d + reg, params[n_g:], create_graph=True)
    return -torch.cat([g.reshape(-1) for g in (*grads_g, *grads_d)]), params


def jacobian_eigenvalues(game, real: torch.Tensor, z: torch.Tensor, k: int = 6) -> np.ndarray:
    """Eigenvalues of J at the current parameters: all of them for small games, else the k of largest
    real part and the k of largest imaginary part (ARPACK)."""
    v, params = update_field(game, real, z)
    n = v.numel()

    def jt_vec(u: np.ndarray) -> np.ndarray:  # J^T u: same spectrum as J
        u_t = torch.as_tensor(u, dtype=v.dtype)
        grads = torch.autograd.grad(v, params, grad_outputs=u_t, retain_graph=True, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, params)]).detach().double().numpy()

    if n <= FULL_MATRIX_MAX_PARAMS:
        jt = np.stack([jt_vec(e) for e in np.eye(n)])
        return np.linalg.eigvals(jt.T)
    from scipy.sparse.linalg import LinearOperator, eigs

    op = LinearOperator((n, n), matvec=jt_vec, dtype=np.float64)
    k = min(k, n - 2)
    by_real = eigs(op, k=k, which="LR", return_eigenvectors=False, maxiter=n * 10, tol=1e-6)
    by_imag = eigs(op, k=k, which="LI", return_eigenvectors=False, maxiter=n * 10, tol=1e-6)
    return np.concatenate([by_real, by_imag])


def spectrum_metrics(eigenvalues: np.ndarray) -> dict[str, float]:
    """max Re (< 0: locally attracting), max |Im| (rotation), and their ratio at the max-Re eigenvalue."""
    lead = eigenvalues[np.argmax(eigenvalues.real)]
    return {
        "jac_max_real": float(eigenvalues.real.max()),
        "jac_max_imag": float(np.abs(eigenvalues.imag).max()),
        "jac_rotation": float(abs(lead.imag) / max(abs(lead.real), 1e-12)),
    }


def duality_gap(game, real: torch.Tensor, z: torch.Tensor, steps: int, lr: float,
                box: float | None = None) -> float:
    """Grnarova et al. 2019: DG = max_v' M(u, v') - min_u' M(u', v) >= 0, 0 exactly at a Nash equilibrium,
    with M(u, v) = -L_D (D's objective without regularizers). Each inner problem is solved approximately by
    ``steps`` of (projected, when ``box`` bounds every parameter) gradient steps on copies of the players,
    so the estimate approaches the true gap from below. Costly: opt-in, at eval steps only."""
    import copy

    def objective(G, D) -> torch.Tensor:
        return game.value(G, D, real, z)

    def best_response(player: torch.nn.Module, value, sign: float) -> float:
        opt = torch.optim.Adam(player.parameters(), lr=lr) if box is None else torch.optim.SGD(player.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            (sign * value()).backward()
            opt.step()
            if box is not None:
                with torch.no_grad():
                    for p in player.parameters():
                        p.clamp_(-box, box)
        with torch.no_grad():
            return float(value())

    G, D = copy.deepcopy(game.G).train(), copy.deepcopy(game.D).train()
    for p in (*G.parameters(), *D.parameters()):
        p.requires_grad_(True)
    D_worst = copy.deepcopy(D)
    best_d = best_response(D_worst, lambda: objective(G, D_worst), sign=-1.0)  # D maximises M
    G_worst = copy.deepcopy(G)
    best_g = best_response(G_worst, lambda: objective(G_worst, D), sign=+1.0)  # G minimises M
    return best_d - best_g
