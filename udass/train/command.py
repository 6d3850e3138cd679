"""The `udass train` command line of a Config, as run.json records it (`reproduce`).

`train_command(cfg, out)` renders the preset's choices as flags and every field that differs
from that preset as a flag or `--set key=value`; `udass.train.config_from_args` parses it back
into the same Config (tests/test_config_protocols.py). A run trained from a notebook or from
Python therefore says how to train it again from a shell.
"""
from __future__ import annotations

import os
import shlex
from typing import Any

from udass.config import Config, build_config, config_diff

# dotted keys that `udass train` takes as flags of their own (the others go through --set)
CLI_FLAGS = {"train.steps": "--steps", "train.checkpoint_every": "--checkpoint-every",
             "data.data_root": "--data-root", "data.flow_root": "--flow-root",
             "model.pretrained": "--pretrained"}


def cli_value(value: Any) -> str:
    """A config value as `--set` / `udass.config.parse_value` reads it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(cli_value(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def train_command(cfg: Config, out: str | os.PathLike) -> str:
    """The `udass train` command line that builds `cfg` and writes to `out`.

    The preset's choices as flags, then every field that differs from the preset of that
    benchmark x backbone x method x profile as a flag (--steps, --data-root, ...) or
    `--set key=value`; parsing it back gives `cfg` again.
    """
    base = build_config(cfg.data.benchmark, cfg.model.backbone, cfg.train.method, cfg.train.profile)
    args = ["udass", "train", "--benchmark", cfg.data.benchmark, "--backbone", cfg.model.backbone,
            "--method", cfg.train.method, "--profile", cfg.train.profile, "--seed", str(cfg.train.seed)]
    keys = [k for k in config_diff(cfg, base) if k != "train.seed"]
    if cfg.train.profile == "paper" and cfg.model.pretrained is None:
        keys.append("model.pretrained")  # the paper profile wants `--pretrained none` said
    for key in keys:
        sec, name = key.split(".", 1)
        value = getattr(getattr(cfg, sec), name)
        flag = CLI_FLAGS.get(key)
        args += [flag, cli_value(value)] if flag else ["--set", f"{key}={cli_value(value)}"]
    return shlex.join([*args, "--out", os.fspath(out)])
