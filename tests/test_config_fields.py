"""Every config field is read by the code a run executes: a field that `--set` accepts and
run.json records but nothing reads is a promise the software does not keep. Short runs of the
test profile (every method, both backbones, image and video, both aggregation losses, the image
recipe's components) train with a Config whose sections record each field read from outside
udass/config.py and dataclasses."""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

import pytest

from udass.config import Config, all_keys, build_config, image_recipe
from udass.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_IGNORED_CALLERS = ("udass/config.py", "/dataclasses.py", "/copy.py")
READ: set[str] = set()


def _tracking(section: str, cls: type) -> type:
    names = {f.name for f in dataclasses.fields(cls)}

    def __getattribute__(self: Any, name: str) -> Any:
        if name in names:
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if not caller.endswith(_IGNORED_CALLERS):
                READ.add(f"{section}.{name}")
        return object.__getattribute__(self, name)

    return type(cls.__name__, (cls,), {"__getattribute__": __getattribute__})


def tracked(cfg: Config) -> Config:
    """cfg with every section replaced by an instance that records its field reads."""
    return Config(**{f.name: _tracking(f.name, type(getattr(cfg, f.name)))(
        **{g.name: getattr(getattr(cfg, f.name), g.name) for g in dataclasses.fields(getattr(cfg, f.name))})
        for f in dataclasses.fields(cfg)})


RUNS = [("synthetic-video", "vit", "quadmix", {"aggregation.confidence": 0.0}),  # prototypes on both sides
        ("synthetic-image", "vit", "quadmix", image_recipe("synthetic-image", "test")),  # RCS, FD, HRDA, MIC
        ("synthetic-image", "cnn", "quadmix", {"aggregation.loss": "contrastive"}),
        ("synthetic-video", "cnn", "dacs", {}),
        ("synthetic-image", "vit", "source_only", {}),
        ("synthetic-video", "cnn", "oracle", {})]


def test_every_config_field_is_read_by_a_run(tmp_path):
    READ.clear()
    for i, (bench, backbone, method, over) in enumerate(RUNS):
        cfg = build_config(bench, backbone, method, "test", {"train.steps": 2, **over})
        train(tracked(cfg), tmp_path / str(i), progress=False)
    unread = sorted(set(all_keys()) - READ)
    assert not unread, f"config fields nothing reads: {unread}"


def test_the_tracker_sees_a_read_and_ignores_the_config_modules_own_walks():
    READ.clear()
    cfg = tracked(build_config("synthetic-video", "vit", "quadmix", "test"))
    cfg.to_dict()                      # dataclasses.asdict: not a read by the software
    dataclasses.replace(cfg.optim, lr=1.0)
    assert READ == set()
    _ = cfg.optim.grad_clip
    assert READ == {"optim.grad_clip"}
