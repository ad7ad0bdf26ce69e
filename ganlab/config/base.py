"""The strict base of every config section, and the one error type user input raises.

Everything downstream (trainer, Ray Tune, MLflow) receives validated configs; nothing downstream re-checks
user input. Every threshold the code uses is a named, documented field of a section, so a study can
override it and a paper can cite it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """A study file or override is wrong. Carries the file and the dotted key path it concerns."""

    def __init__(self, source: str | Path | None, key: str | None, message: str):
        self.source = str(source) if source is not None else None
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"config file '{self.source}'" if self.source else "config"
        at = f", key '{self.key}'" if self.key else ""
        return f"Invalid {where}{at}: {self.message} Fix it and run again."


class ConfigFileMissing(ConfigError):
    """The config file named is not there: nothing about its content can be said."""

    def __init__(self, source: str | Path):
        super().__init__(source, None, "no such file.")

    def __str__(self) -> str:
        return f"No such file: '{self.source}'. Check the path (the shipped studies are in studies/)."


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a study file must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
