"""ganlab: distributed experiment orchestration for GAN training-stability studies."""

__version__ = "0.1.0"
