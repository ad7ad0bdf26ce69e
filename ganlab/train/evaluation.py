"""What a trainer's current generator is worth: sample quality and the opt-in costly analyses, at eval
steps. Every figure draws from its own stream fixed by (seed, iteration), so evaluating more or less often
never changes the training trajectory."""

from __future__ import annotations

import torch

from ganlab.data import GaussianMixture, digit_classifier
from ganlab.diagnose.equilibrium import duality_gap, jacobian_eigenvalues, spectrum_metrics
from ganlab.diagnose.samples import digit_metrics, mode_metrics, sliced_wasserstein

SLICED_W_PROJECTIONS = 64  # random directions of the sliced Wasserstein estimate


class Evaluator:
    """The eval/* figures of one trainer; keeps the probe's baseline (D as initialised), computed once."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.probe_baseline: float | None = None

    def __call__(self) -> dict[str, float]:
        """The eval/* figures at the trainer's current iteration."""
        t = self.trainer
        out: dict[str, float] = {}
        if t.data.kind == "points" and t.cfg.model.name != "dirac":
            n = t.cfg.train.eval_samples
            fake = t.generate(n)
            rng = torch.Generator().manual_seed(t._eval_seed - 1 - t.iteration)
            out["eval/sliced_w"] = sliced_wasserstein(fake, t.data.sample(n, rng), SLICED_W_PROJECTIONS, rng)
            if isinstance(t.data, GaussianMixture):
                stats = mode_metrics(fake, t.data, t.cfg.diagnostics.hq_sigmas)
                out.update({f"eval/{k}": v for k, v in stats.items()})
        if t.cfg.data.name in ("digits", "stacked_digits"):
            n = t.cfg.train.eval_samples
            rng = torch.Generator().manual_seed(t._eval_seed - 1 - t.iteration)
            stats = digit_metrics(t.generate(n), t.data.sample(n, rng), digit_classifier(),
                                  stacked=t.cfg.data.name == "stacked_digits")
            out.update({f"eval/{k}": v for k, v in stats.items()})
        if t.cfg.diagnostics.d_probe:
            out.update(self._probe_metrics())
        if t.cfg.diagnostics.jacobian:
            out.update(self._jacobian_metrics())
        if t.cfg.diagnostics.duality_gap:
            d = t.cfg.diagnostics
            rng = torch.Generator().manual_seed(t._eval_seed + 11 + t.iteration)
            n = t.cfg.data.batch_size
            out["eval/duality_gap"] = duality_gap(t, t.data.sample(n, rng).to(t.device), t._latents(n, rng),
                                                  d.duality_gap_steps, d.duality_gap_lr, d.duality_gap_box or None)
        if t.cfg.model.name == "dirac":
            theta, psi = t.eval_generator.theta.item(), t.D.psi.item()
            out.update({"eval/dirac_theta": theta, "eval/dirac_psi": psi,
                        "eval/dirac_distance": (theta**2 + psi**2) ** 0.5})
        return out

    def _probe_metrics(self) -> dict[str, float]:
        from ganlab.diagnose.probe import d_feature_probe

        t = self.trainer
        d = t.cfg.diagnostics
        if self.probe_baseline is None:  # deterministic: a resumed trial recomputes the same value
            _, D0 = t.initial_models(t._init_seed)
            self.probe_baseline = d_feature_probe(D0.to(t.device), d.d_probe_c, d.d_probe_max_iter,
                                                  d.d_probe_per_class)
        return {"eval/d_probe_acc": d_feature_probe(t.D, d.d_probe_c, d.d_probe_max_iter, d.d_probe_per_class),
                "eval/d_probe_acc_random": self.probe_baseline}

    def _jacobian_metrics(self) -> dict[str, float]:
        """Spectrum of the game's Jacobian on a fixed eval batch. Forward passes in training mode move
        batch-norm statistics and spectral-norm vectors: they are restored, so evaluating never changes
        the training trajectory."""
        t = self.trainer
        buffers = [b for m in (t.G, t.D) for b in m.buffers()]
        saved = [b.clone() for b in buffers]
        rng = torch.Generator().manual_seed(t._eval_seed + 7 + t.iteration)
        n = t.cfg.data.batch_size
        try:
            eigenvalues = jacobian_eigenvalues(t, t.data.sample(n, rng).to(t.device), t._latents(n, rng))
        finally:
            with torch.no_grad():
                for b, v in zip(buffers, saved):
                    b.copy_(v)
        return {f"eval/{k}": v for k, v in spectrum_metrics(eigenvalues).items()}
