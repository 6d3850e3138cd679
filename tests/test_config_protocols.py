"""Configuration presets and overrides; class protocols and id maps."""
from __future__ import annotations

import numpy as np
import pytest

from udass.config import ABLATIONS, build_config, config_diff, config_from_dict, parse_set_args
from udass.data.protocols import BENCHMARKS, PROTOCOLS, LabelIdWarning, map_label, reset_unexpected_label_ids
from udass.errors import UdassError


def test_overrides_are_typed_and_validated():
    cfg = build_config("synthetic-video", "vit", "quadmix", "demo",
                       parse_set_args(["quadmix.paths=ss,tt", "train.steps=7", "feature_mix.enabled=off"]))
    assert cfg.quadmix.paths == ("ss", "tt") and cfg.train.steps == 7 and not cfg.feature_mix.enabled
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_diff(cfg, build_config()) == ["feature_mix.enabled", "quadmix.paths", "train.steps"]
    with pytest.raises(UdassError, match="did you mean 'quadmix.paths'"):
        build_config(overrides={"quadmix.path": "ss"})
    with pytest.raises(UdassError, match="unknown path"):
        build_config(overrides={"quadmix.paths": "ss,xx"})
    with pytest.raises(UdassError, match="expected a number"):
        build_config(overrides={"train.steps": "many"})
    with pytest.raises(UdassError, match="unknown backbone"):
        build_config(backbone="transformer")


def test_paper_profile_follows_the_protocol_recipes():
    cnn = build_config("viper2cityscapes-seq", "cnn", "quadmix", "paper")
    assert (cnn.optim.name, cnn.optim.lr, cnn.optim.poly_power) == ("sgd", 1e-4, 0.9)
    assert cnn.train.lambda_t == 0.2 and cnn.train.steps == 40000
    assert (cnn.data.batch_source, cnn.data.batch_target) == (1, 1)
    vit = build_config("gtav2cityscapes", "vit", "quadmix", "paper")
    assert (vit.optim.name, vit.optim.lr, vit.optim.warmup_steps) == ("adamw", 6e-5, 1500)
    assert vit.model.variant == "mit_b5" and vit.data.crop_size == (1024, 1024)  # HRDA's crop
    assert (vit.data.batch_source, vit.data.batch_target) == (2, 2)
    seq = build_config("synthia-seq2cityscapes-seq", "cnn", "quadmix", "paper")
    assert seq.data.source_size == (640, 1280) and seq.data.source_crop_bottom == 120


def test_ablation_rows_are_valid_override_sets():
    for name, (method, overrides) in ABLATIONS.items():
        cfg = build_config(method=method, overrides=overrides)
        assert cfg.train.method == method, name


def test_id_maps_of_the_protocols():
    seq = PROTOCOLS["synthia-seq12"]
    assert map_label(np.array([8]), "synthia-seq12", "synthia-seq")[0] == seq.index("car")
    vip = PROTOCOLS["viper15"]
    assert set(map_label(np.array([7, 8]), "viper15", "viper").tolist()) == {vip.index("vegetation")}
    assert map_label(np.array([25]), "viper15", "cityscapes")[0] == vip.index("person")
    assert map_label(np.array([0, 4, 33]), "cityscapes19", "cityscapes").tolist() == [255, 255, 18]
    with pytest.warns(LabelIdWarning, match="x.png: label ids \\[40\\] outside the cityscapes encoding"):
        assert map_label(np.array([[7, 40]]), "cityscapes19", "cityscapes", source="x.png").tolist() == [[0, 255]]
    reset_unexpected_label_ids()


def test_evaluation_subsets():
    assert len(BENCHMARKS["synthia-seq2cityscapes-seq"].eval_classes) == 11
    assert "fence" not in BENCHMARKS["synthia-seq2cityscapes-seq"].eval_class_names()
    syn = BENCHMARKS["synthia2cityscapes"]
    assert len(syn.subsets["miou_16"]) == 16 and len(syn.subsets["miou_13"]) == 13
    assert len(BENCHMARKS["viper2cityscapes-seq"].eval_classes) == 15


@pytest.mark.parametrize("bench,backbone,method,profile,over", [
    ("synthetic-video", "vit", "quadmix", "demo", {}),
    ("synthetic-video", "cnn", "dacs", "demo", {"train.steps": 40, "quadmix.paths": ("ss", "tss"),
                                               "aggregation.weight": 0.003, "feature_mix.enabled": False}),
    ("synthetic-image", "vit", "quadmix", "test", {"quadmix.paths": (), "data.crop_size": (32, 48),
                                                   "train.checkpoint_every": 3, "train.seed": 4}),
    ("viper2cityscapes-seq", "vit", "quadmix", "paper", {"data.data_root": "/data/my datasets",
                                                          "teacher.pseudo_threshold": 0.9}),
    ("gtav2cityscapes", "cnn", "source_only", "paper", {"model.pretrained": "WEIGHTS",
                                                       "train.init_checkpoint": "/c/ckpt.pt"}),
])
def test_train_command_parses_back_to_the_same_config(bench, backbone, method, profile, over, tmp_path):
    """run.json's `reproduce` line, fed to the real `udass train` parser, rebuilds the config."""
    import shlex

    if over.get("model.pretrained") == "WEIGHTS":  # the CLI checks that the file exists
        (tmp_path / "resnet 101.pth").write_bytes(b"")
        over = {**over, "model.pretrained": str(tmp_path / "resnet 101.pth")}

    from udass.cli import build_parser
    from udass.train.command import train_command
    from udass.train import config_from_args

    cfg = build_config(bench, backbone, method, profile, over)
    line = train_command(cfg, "runs/my run")
    argv = shlex.split(line)
    assert argv[:2] == ["udass", "train"] and argv[-2:] == ["--out", "runs/my run"]
    a = build_parser().parse_args(argv[1:])
    assert config_from_args(a) == cfg, config_diff(config_from_args(a), cfg)
    assert sum(arg == "--set" for arg in argv) <= len(over)  # only what differs from the preset
