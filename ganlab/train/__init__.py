"""The GAN itself: models, losses, regularizers and the ``Trainer`` that runs one trial's training loop
(``trainer``), its evaluation (``evaluation``), checkpoints and exported weights (``checkpoint``), and the
driver of ``ganlab train`` (``run``). Knows nothing of Ray or MLflow; imports ``ganlab.config``,
``ganlab.data`` and ``ganlab.diagnose``. Public: ``Trainer``, ``metric_names``, ``build_models``."""

from ganlab.train.checkpoint import CheckpointMismatch
from ganlab.train.models import build_models
from ganlab.train.trainer import StepReport, Trainer, metric_names

__all__ = ["Trainer", "StepReport", "metric_names", "build_models", "CheckpointMismatch"]
