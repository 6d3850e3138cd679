"""Config of the image-recipe components (RCS, HRDA, MIC, FD): off in every preset but the paper
profile of the image benchmarks, which is the authors' image recipe item by item; the named
recipes and the image ablation rows as override sets; set by --set, checked, and absent from
older configs without changing them."""
from __future__ import annotations

import pytest

from udass.config import (ABLATIONS, BACKBONES, IMAGE_ABLATIONS, IMAGE_COMPONENTS, METHODS,
                          PAPER_IMAGE_RECIPES, PROFILES, RECIPES, ablation_rows, build_config,
                          config_diff, config_from_dict, image_recipe, parse_set_args, recipe)
from udass.data.protocols import BENCHMARKS
from udass.errors import UdassError

SWITCHES = ("data.rcs", "model.hrda", "mic.enabled", "fd.enabled")
PAPER_IMAGE = ("gtav2cityscapes", "synthia2cityscapes")


def _get(cfg, key):
    sec, name = key.split(".")
    return getattr(getattr(cfg, sec), name)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_preset_has_the_components_off_but_the_paper_image_recipe(profile):
    for bench in BENCHMARKS:
        for backbone in BACKBONES:
            for method in METHODS:
                cfg = build_config(bench, backbone, method, profile)
                on = profile == "paper" and bench in PAPER_IMAGE
                assert [_get(cfg, k) for k in SWITCHES] == [on] * 4, (bench, backbone, method)


def test_the_paper_image_profile_is_the_authors_recipe_item_by_item():
    """The paper's image recipe (docs/method.md, "The paper profile"), row by row."""
    cfg = build_config("gtav2cityscapes", "vit", "quadmix", "paper")
    d, m, o = cfg.data, cfg.model, cfg.optim
    assert (d.source_size, d.target_size, d.crop_size) == ((1440, 2560), (1024, 2048), (1024, 1024))
    assert (m.hrda_context_scale, m.hrda_detail_size, m.hrda_detail_loss) == (0.5, (512, 512), 0.1)
    assert (m.hrda_eval_window, m.hrda_eval_stride) == ((1024, 1024), (512, 512))
    assert (d.rcs_temperature, d.rcs_min_pixels, d.rcs_min_crop_ratio) == (0.01, 3000, 2.0)
    assert (cfg.fd.weight, cfg.fd.min_ratio) == (0.005, 0.75)
    assert (cfg.mic.block_size, cfg.mic.ratio, cfg.mic.weight) == (64, 0.7, 1.0)
    assert (o.name, o.lr, o.head_lr_mult, o.warmup_steps, o.poly_power) == ("adamw", 6e-5, 10.0, 1500, 1.0)
    assert (d.batch_source, d.batch_target, cfg.train.steps) == (2, 2, 40000)
    assert (cfg.teacher.ema, cfg.teacher.pseudo_threshold) == (0.999, 0.968)
    assert cfg.quadmix.start_step == 4000 and m.variant == "mit_b5"
    syn = build_config("synthia2cityscapes", "cnn", "quadmix", "paper")
    assert syn.data.source_size == (1520, 2560) and syn.quadmix.start_step == 6000
    assert (syn.optim.name, syn.optim.lr, syn.model.variant) == ("adamw", 6e-5, "resnet101")
    assert build_config("synthia2cityscapes", "vit", "quadmix", "paper").quadmix.start_step == 3000
    # the table is the paper preset's difference from the single-resolution one
    for (bench, backbone), over in PAPER_IMAGE_RECIPES.items():
        assert build_config(bench, backbone, "quadmix", "paper", over) == \
            build_config(bench, backbone, "quadmix", "paper")
    # video recipes are untouched: the CNN's SGD, no component
    seq = build_config("viper2cityscapes-seq", "cnn", "quadmix", "paper")
    assert seq.optim.name == "sgd" and not (seq.model.hrda or seq.data.rcs or seq.mic.enabled)


def test_named_recipes_switch_their_components_and_restore_single_resolution():
    cfg = build_config("gtav2cityscapes", "vit", "dacs", "paper",
                       recipe("single_resolution", "gtav2cityscapes", "vit", "paper"))
    assert [_get(cfg, k) for k in SWITCHES] == [False] * 4 and cfg.quadmix.start_step == 0
    assert (cfg.data.source_size, cfg.data.target_size, cfg.data.crop_size) == \
        ((720, 1280), (512, 1024), (512, 512))
    daf = build_config("gtav2cityscapes", "vit", "dacs", "paper",
                       recipe("daformer", "gtav2cityscapes", "vit", "paper"))
    assert config_diff(daf, cfg) == ["data.rcs", "data.rcs_min_crop_ratio", "fd.enabled"]
    assert daf.data.rcs_min_crop_ratio == 0.5               # DAFormer's configs; HRDA / MIC: 2.0
    authors = recipe("authors", "synthia2cityscapes", "cnn", "paper")
    assert build_config("synthia2cityscapes", "cnn", "quadmix", "paper", authors) == \
        build_config("synthia2cityscapes", "cnn", "quadmix", "paper")
    assert set(RECIPES) == {"single_resolution", "daformer", "hrda", "authors"}
    with pytest.raises(UdassError, match="unknown recipe 'mic_hrda'"):
        recipe("mic_hrda", "gtav2cityscapes", "vit", "paper")
    with pytest.raises(UdassError, match="video benchmark"):
        recipe("daformer", "synthetic-video", "vit", "demo")


def test_the_recipe_flag_of_udass_train_applies_before_set(tmp_path):
    from udass.cli import build_parser
    from udass.train.command import train_command
    from udass.train import config_from_args

    argv = ["train", "--benchmark", "gtav2cityscapes", "--profile", "paper", "--pretrained", "none",
            "--recipe", "hrda", "--set", "data.rcs=false", "--out", str(tmp_path / "r")]
    cfg = config_from_args(build_parser().parse_args(argv))
    over = {**recipe("hrda", "gtav2cityscapes", "vit", "paper"), "data.rcs": False}
    assert cfg == build_config("gtav2cityscapes", "vit", "quadmix", "paper", over)
    assert cfg.model.hrda and cfg.fd.enabled and not cfg.data.rcs and not cfg.mic.enabled
    import shlex

    again = config_from_args(build_parser().parse_args(shlex.split(train_command(cfg, "x"))[1:]))
    assert again == cfg                                       # run.json's line needs no --recipe


def test_image_ablation_rows_add_one_component_each_at_the_profiles_sizes():
    assert ablation_rows("synthetic-video", "demo") == dict(ABLATIONS)
    for profile in PROFILES:
        rows = ablation_rows("synthetic-image", profile)
        assert list(rows) == list(IMAGE_ABLATIONS) == ["quadmix", "+rcs", "+fd", "+hrda", "+mic"]
        cfgs = [build_config("synthetic-image", "vit", method, profile, over)
                for method, over in rows.values()]
        for prev, cfg, part in zip(cfgs, cfgs[1:], IMAGE_COMPONENTS):
            switch = {"rcs": "data.rcs", "fd": "fd.enabled", "hrda": "model.hrda", "mic": "mic.enabled"}[part]
            assert [_get(cfg, k) for k in SWITCHES if k != switch] == \
                [_get(prev, k) for k in SWITCHES if k != switch] and _get(cfg, switch)
    demo = ablation_rows("synthetic-image", "demo")
    base = build_config("synthetic-image", "vit", "quadmix", "demo")
    assert build_config("synthetic-image", "vit", "quadmix", "demo", demo["quadmix"][1]) == base
    hrda = build_config("synthetic-image", "vit", "quadmix", "demo", demo["+hrda"][1])
    assert (hrda.data.crop_size, hrda.model.hrda_detail_size, hrda.data.source_size) == \
        ((128, 128), (64, 64), (128, 256))                 # demo frames stay at the data's size
    assert hrda.data.rcs_min_pixels == 49 and build_config(
        "synthetic-image", "vit", "quadmix", "demo", demo["+mic"][1]).mic.block_size == 8
    test = build_config("synthetic-image", "vit", "quadmix", "test", ablation_rows("synthetic-image", "test")["+mic"][1])
    assert (test.data.source_size, test.data.crop_size, test.model.hrda_detail_size) == \
        ((64, 128), (64, 64), (32, 32))                    # test frames at twice the test size


def test_values_parse_from_set():
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


def test_hrda_needs_an_image_benchmark_and_a_detail_crop_inside_the_training_crop():
    with pytest.raises(UdassError, match="model.hrda=true on the video benchmark synthetic-video"):
        build_config("synthetic-video", overrides={"model.hrda": True})
    with pytest.raises(UdassError, match=r"hrda_detail_size=\(64, 64\) is larger than data.crop_size=\(32, 64\)"):
        build_config("synthetic-image", profile="test",
                     overrides={"model.hrda": True, "model.hrda_detail_size": (64, 64)})
    with pytest.raises(UdassError, match="unknown image-recipe component 'masking'"):
        image_recipe("synthetic-image", "demo", ("masking",))


def test_a_config_saved_before_these_fields_loads_with_them_off():
    cfg = build_config("synthetic-image", "vit", "quadmix", "demo")
    old = cfg.to_dict()
    for sec in ("mic", "fd"):
        old.pop(sec)
    for key in ("rcs", "rcs_temperature", "rcs_min_pixels", "rcs_min_crop_ratio"):
        old["data"].pop(key)
    assert config_from_dict(old) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
