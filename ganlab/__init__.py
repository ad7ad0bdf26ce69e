"""ganlab: distributed experiment orchestration for GAN training-stability studies."""

__version__ = "0.1.0"


def load_trial(run_id_or_trial: str, tracking_uri: str | None = None, device="cpu", weights="final", verify=True):
    """A trial's config and its trained G and D, ready to use: see ``ganlab.trials.load_trial``. Imported on
    first use, so that ``import ganlab`` stays cheap."""
    from ganlab.trials import load_trial as load

    return load(run_id_or_trial, tracking_uri, device, weights, verify)
