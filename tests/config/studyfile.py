"""A small study file to vary, and the two steps the config tests repeat: write it, and load it expecting a
ConfigError. Imported by the tests of tests/config/ (``from studyfile import BASE, write, error_of``)."""

import textwrap
from pathlib import Path

import pytest

from ganlab.config import ConfigError, load_study

BASE = """
name: t
trial:
  data: {name: ring8, batch_size: 64}
  optim: {lr_g: 1e-4, lr_ratio: 2}
  train: {steps: 20, eval_every: 10, log_every: 5}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_study(path)
    return info.value
