"""ganlab.config.base: the one error type user input raises (one sentence naming file and key), and the strict
base every config section shares (unknown keys refused, values frozen)."""

import pydantic
import pytest

from ganlab.config import ConfigError
from ganlab.config.base import ConfigFileMissing, _Strict


def test_config_error_names_file_and_key_in_one_sentence():
    err = ConfigError("studies/x.yaml", "trial.optim.lr_g", "must be greater than 0 (got -1).")
    assert (err.source, err.key, err.message) == ("studies/x.yaml", "trial.optim.lr_g", "must be greater than 0 (got -1).")
    assert str(err) == ("Invalid config file 'studies/x.yaml', key 'trial.optim.lr_g': must be greater than 0 "
                        "(got -1). Fix it and run again.")
    assert str(ConfigError(None, None, "bad.")) == "Invalid config: bad. Fix it and run again."
    assert str(ConfigError(None, "seed", "bad.")) == "Invalid config, key 'seed': bad. Fix it and run again."


def test_a_missing_file_is_a_config_error_that_says_only_so():
    err = ConfigFileMissing("nope.yaml")
    assert isinstance(err, ConfigError) and err.key is None and err.source == "nope.yaml"
    assert str(err) == "No such file: 'nope.yaml'. Check the path (the shipped studies are in studies/)."


def test_strict_sections_refuse_unknown_keys_and_stay_frozen():
    class Section(_Strict):
        width: int = 8

    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        Section(widht=16)
    section = Section(width=16)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        section.width = 32
    assert section.width == 16
