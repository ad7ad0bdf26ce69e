"""Nash-equilibrium diagnostics: pure functions on the tensors a training step already has (D's outputs,
losses, generated samples), the accumulators that reduce them, the stability verdict, and the opt-in costly
analyses (the game's Jacobian, the duality gap, a probe of D's features). Below the trainer: nothing here
knows which loss, model or optimiser produced the numbers; it imports only ``ganlab.config`` and
``ganlab.data`` (the modes and classes that sample quality is measured against).

Modules: ``metrics`` (every metric's name, meaning, unit and cadence), ``stats`` (Collector, SlidingWindow),
``balance`` (D's accuracy), ``oscillation`` (window statistics), ``samples`` (modes, sliced Wasserstein, Frechet
distance), ``equilibrium`` (Jacobian, duality gap), ``verdict``, ``probe``, ``plots`` (pictures of samples and
curves).
"""
