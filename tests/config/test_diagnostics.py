"""ganlab.config.diagnostics: every setting of the diagnostics and threshold of the verdict is a documented field
with its bounds, refused with its key when out of them."""

import pytest

from ganlab.config import ConfigError, DiagnosticsConfig, VerdictConfig, parse_trial


@pytest.mark.parametrize("section", [DiagnosticsConfig, VerdictConfig], ids=lambda s: s.__name__)
def test_every_field_is_documented(section):
    """A study can override every threshold and a paper can cite it: each one says what it does."""
    undocumented = [name for name, field in section.model_fields.items() if not field.description]
    assert not undocumented


@pytest.mark.parametrize("key, value", [
    ("diagnostics.window", 1),  # one point has no oscillation
    ("diagnostics.period_alpha", 1.0),
    ("diagnostics.period_min_cycles", 0),
    ("diagnostics.hq_sigmas", 0.0),
    ("verdict.d_dominates_auc", 0.5),  # chance is not domination
    ("verdict.g_dominates_auc", 0.5),
    ("verdict.converged_auc_gap", 0.5),
    ("verdict.diverged_distance_factor", 1.0),
    ("verdict.settled_distance_fraction", 1.0),
])
def test_out_of_bounds_values_are_refused_with_their_key(key, value):
    section, field = key.split(".")
    with pytest.raises(ConfigError) as info:
        parse_trial({section: {field: value}})
    assert info.value.key == key


def test_the_default_verdict_bands_do_not_overlap():
    cfg = parse_trial({})
    assert cfg.diagnostics == DiagnosticsConfig() and cfg.verdict == VerdictConfig()
    v = cfg.verdict
    assert v.g_dominates_auc < 0.5 - v.converged_auc_gap <= 0.5 + v.converged_auc_gap < v.d_dominates_auc
