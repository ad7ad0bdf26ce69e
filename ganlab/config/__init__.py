"""Study files and trial configs: the only place where user input becomes typed values.

Public: ``load_study`` (a study file, fully checked), ``parse_trial`` / ``apply_overrides`` (one trial),
``read_yaml``, ``ConfigError``, ``TrialConfig``, ``StudyConfig`` and their sections. Bottom layer: imports
nothing else of ganlab.
"""

from ganlab.config.base import ConfigError
from ganlab.config.diagnostics import DiagnosticsConfig, VerdictConfig
from ganlab.config.expressions import evaluate_expression, expression_names
from ganlab.config.lanes import LANE_KEYS, MUTABLE_KEYS, PER_LANE_KEYS
from ganlab.config.loading import apply_overrides, load_study, parse_trial, read_yaml, set_dotted
from ganlab.config.study import (
    ArtifactsConfig,
    AshaSchedulerConfig,
    BestWeightsConfig,
    ConfirmConfig,
    FifoSchedulerConfig,
    PbtSchedulerConfig,
    Resources,
    SearchConfig,
    StudyConfig,
    SweepAxis,
)
from ganlab.config.trial import (
    IMAGE_DATA,
    AdamConfig,
    DataConfig,
    DcganConfig,
    DigitsConfig,
    DiracDataConfig,
    DiracModelConfig,
    Grid25Config,
    LossConfig,
    MlpConfig,
    ModelConfig,
    NpzConfig,
    OptimConfig,
    RegularizerConfig,
    Ring8Config,
    RmspropConfig,
    ScheduleConfig,
    SgdConfig,
    StackedDigitsConfig,
    TrainConfig,
    TrialConfig,
    WganConfig,
    WganGpConfig,
    flatten,
)

__all__ = [
    "ConfigError", "load_study", "parse_trial", "apply_overrides", "read_yaml", "set_dotted", "flatten",
    "evaluate_expression", "expression_names", "TrialConfig", "StudyConfig", "MUTABLE_KEYS", "PER_LANE_KEYS", "LANE_KEYS",
    "IMAGE_DATA",
    "DataConfig", "Ring8Config", "Grid25Config", "DiracDataConfig", "DigitsConfig", "StackedDigitsConfig",
    "NpzConfig", "ModelConfig", "MlpConfig", "DcganConfig", "DiracModelConfig", "LossConfig", "WganConfig",
    "WganGpConfig", "RegularizerConfig", "OptimConfig", "AdamConfig", "SgdConfig", "RmspropConfig",
    "ScheduleConfig", "TrainConfig", "DiagnosticsConfig", "VerdictConfig", "SweepAxis", "Resources",
    "SearchConfig", "FifoSchedulerConfig", "AshaSchedulerConfig", "PbtSchedulerConfig", "ConfirmConfig",
    "BestWeightsConfig", "ArtifactsConfig",
]
