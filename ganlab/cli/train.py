"""``ganlab train``: one trial without Ray, into a folder (the driver is ``ganlab.train.run``)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ganlab.cli.common import _fail
from ganlab.config import ConfigError
from ganlab.config.loading import read_trial_file


def cmd_train(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    try:
        cfg = read_trial_file(config_path, args.set)
    except ConfigError as e:
        return _fail(str(e))
    out = Path(args.out) if args.out else Path("runs") / config_path.stem
    from ganlab.train.run import RunRefused, train_in_folder

    sets = [a for s in args.set for a in ("--set", s)]
    again = shlex.join(["ganlab", "train", args.config, *sets, "--out", str(out)])
    try:
        return train_in_folder(cfg, out, args.resume, config_path, again)
    except RunRefused as e:
        return _fail(str(e))
