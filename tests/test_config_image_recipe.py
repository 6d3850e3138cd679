"""Config fields of the image-recipe components (RCS, HRDA, MIC, FD): off in every preset, set
by --set, checked, and absent from older configs without changing them."""
from __future__ import annotations

import pytest

from udass.config import (BACKBONES, METHODS, PROFILES, build_config, config_from_dict,
                          parse_set_args)
from udass.data.protocols import BENCHMARKS
from udass.errors import UdassError

SWITCHES = ("data.rcs", "model.hrda", "mic.enabled", "fd.enabled")


def _get(cfg, key):
    sec, name = key.split(".")
    return getattr(getattr(cfg, sec), name)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_preset_has_the_components_off(profile):
    for bench in BENCHMARKS:
        for backbone in BACKBONES:
            for method in METHODS:
                cfg = build_config(bench, backbone, method, profile)
                assert [_get(cfg, k) for k in SWITCHES] == [False] * 4


def test_values_default_to_the_published_ones_and_parse_from_set():
    cfg = build_config("gtav2cityscapes", "vit", "quadmix", "paper")
    d, m = cfg.data, cfg.model
    assert (d.rcs_temperature, d.rcs_min_pixels, d.rcs_min_crop_ratio) == (0.01, 3000, 2.0)
    assert (m.hrda_context_scale, m.hrda_detail_size, m.hrda_detail_loss) == (0.5, (512, 512), 0.1)
    assert (cfg.model.hrda_eval_window, cfg.model.hrda_eval_stride) == ((1024, 1024), (512, 512))
    assert (cfg.mic.block_size, cfg.mic.ratio, cfg.mic.weight) == (64, 0.7, 1.0)
    assert (cfg.fd.weight, cfg.fd.min_ratio) == (0.005, 0.75)
    sets = parse_set_args(["data.rcs=on", "model.hrda=true", "model.hrda_detail_size=32,32",
                           "mic.enabled=1", "mic.ratio=0.5", "fd.enabled=yes"])
    cfg = build_config("synthetic-image", "vit", "quadmix", "test", sets)
    assert [_get(cfg, k) for k in SWITCHES] == [True] * 4
    assert cfg.model.hrda_detail_size == (32, 32) and cfg.mic.ratio == 0.5


@pytest.mark.parametrize("key,value,match", [
    ("data.rcs_temperature", "0", "rcs_temperature=0.0: expected a positive"),
    ("data.rcs_min_pixels", "-1", "rcs_min_pixels"),
    ("model.hrda_context_scale", "1.0", "hrda_context_scale"),
    ("model.hrda_detail_size", "0,512", "hrda_detail_size"),
    ("mic.block_size", "0", "mic.block_size"),
    ("mic.ratio", "1.5", "mic.ratio"),
])
def test_out_of_range_values_are_one_line_errors(key, value, match):
    with pytest.raises(UdassError, match=match):
        build_config("synthetic-image", overrides={key: value})


def test_a_config_saved_before_these_fields_loads_with_them_off():
    cfg = build_config("synthetic-image", "vit", "quadmix", "demo")
    old = cfg.to_dict()
    for sec in ("mic", "fd"):
        old.pop(sec)
    for key in ("rcs", "rcs_temperature", "rcs_min_pixels", "rcs_min_crop_ratio"):
        old["data"].pop(key)
    assert config_from_dict(old) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
