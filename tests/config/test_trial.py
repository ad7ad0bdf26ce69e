"""ganlab.config.trial: one trial's config, its defaults, cross-section checks and digest."""

import pytest

from ganlab.config import ConfigError, TrialConfig, apply_overrides, parse_trial

from studyfile import BASE, error_of, write


def test_overrides_and_defaults():
    cfg = apply_overrides(TrialConfig(), {"optim.lr_ratio": 4, "seed": 3})
    assert cfg.optim.lr_ratio == 4.0 and cfg.seed == 3 and cfg.optim.lr_d == pytest.approx(4e-4)
    assert cfg.flat()["optim.betas"] == [0.5, 0.999]
    with pytest.raises(ConfigError) as info:
        parse_trial({"optim": {"betas": [0.5, 1.5]}})
    assert info.value.key == "optim.betas"


def test_digest_tracks_content():
    assert TrialConfig().digest() == TrialConfig().digest()
    assert TrialConfig().digest() != apply_overrides(TrialConfig(), {"seed": 1}).digest()


def test_d_probe_needs_digits(tmp_path):
    err = error_of(write(tmp_path, BASE + "  diagnostics: {d_probe: true}\n"))
    assert err.key == "trial.diagnostics.d_probe" and "digits" in err.message

