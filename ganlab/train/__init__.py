"""The GAN itself: models, losses, regularizers and the ``Trainer``, which trains one trial, or a pack of trials
of one shape as the lanes of one vectorised model. Its rooms: the pack model (``pack``), D's objective
(``objective``), the recorder of every step's diagnostics (``recorder``), the evaluator (``evaluation``), the
judge of blow-ups and verdicts (``judge``), checkpoints and exported weights (``checkpoint``); and the driver
of ``ganlab train`` (``run``). Knows nothing of Ray or MLflow; imports ``ganlab.config``, ``ganlab.data`` and
``ganlab.diagnose``. Public: ``Trainer``, ``StepReport``, ``PackReport``, ``metric_names``, ``build_models``."""

from ganlab.train.checkpoint import CheckpointMismatch
from ganlab.train.models import build_models
from ganlab.train.trainer import PackReport, StepReport, Trainer, metric_names

__all__ = ["Trainer", "StepReport", "PackReport", "metric_names", "build_models", "CheckpointMismatch"]
