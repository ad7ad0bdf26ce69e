"""ganlab: distributed experiment orchestration for GAN training-stability studies.

The package's layers, bottom to top (each imports only those below it; ``docs/architecture.md``):
config -> data -> diagnose -> train -> track -> study | analysis -> cli.
"""

__version__ = "0.1.0"

_MOVED = {"probe": "ganlab.diagnose.probe"}  # documented before the layout had subpackages


def load_trial(run_id_or_trial: str, tracking_uri: str | None = None, device="cpu", weights="final", verify=True):
    """A trial's config and its trained G and D, ready to use: see ``ganlab.analysis.trials.load_trial``.
    Imported on first use, so that ``import ganlab`` stays cheap."""
    from ganlab.analysis.trials import load_trial as load

    return load(run_id_or_trial, tracking_uri, device, weights, verify)


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'ganlab' has no attribute {name!r}")
