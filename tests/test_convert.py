"""`udass convert`: each release layout (tests/release_layouts.py, described from the public code)
maps key by key onto a udass network, every key of the file is consumed or named as dropped, and
the converted checkpoint, read back by `udass evaluate`'s loader, gives the release's outputs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from release_layouts import (AccelDeepLab, DAFormerHead, DAFormerTPS, EncoderDecoder, MiT, caffe_input,
                             daformer_uda_state, mmseg_input, randomize)
from udass.checkpoint import load_checkpoint
from udass.cli import main
from udass.convert import convert_checkpoint, convert_state
from udass.evaluate import load_network
from udass.models import VARIANTS, Variant

TINY_MIT = dict(dims=(8, 16, 32, 64), heads=(1, 1, 1, 2), depths=(1, 1, 1, 1))   # = mit_tiny
TINY_HEAD = dict(in_channels=(8, 16, 32, 64), embed=16, dilations=(1, 2, 3, 4))
TINY_RESNET = dict(layers=(1, 1, 1, 1), width=4, dilations=(2, 3, 4, 5))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def bottleneck_tiny(monkeypatch):
    """A bottleneck ResNet small enough for tests, registered as a udass variant for the test
    (udass's own tiny ResNet uses basic blocks; the releases are bottleneck ResNet-101s)."""
    monkeypatch.setitem(VARIANTS, "resnet_bottleneck_tiny", Variant(
        "cnn", dict(block="bottleneck", layers=TINY_RESNET["layers"], width=TINY_RESNET["width"]),
        dict(dilations=TINY_RESNET["dilations"]), note="tests"))


def _clip(gen: torch.Generator, h: int = 64, w: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different frames (t, t-1) of two clips and zero flow: [2, 2, 3, H, W], [2, 1, 2, H, W]."""
    return torch.rand(2, 2, 3, h, w, generator=gen), torch.zeros(2, 1, 2, h, w)


def _convert(tmp_path: Path, fmt: str, state: dict, **kw) -> tuple[Path, dict]:
    src, dst = tmp_path / f"{fmt}.pth", tmp_path / f"{fmt}.pt"
    torch.save(state, src)
    conv = convert_checkpoint(fmt, src, dst, **kw)
    return dst, conv.info


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding (the input normalisation and 1 x 1 convs round differently)."""
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())


# ------------------------------------------------------------------- paper-size layouts, key by key
@pytest.mark.parametrize("fmt, benchmark, variant, expected", [
    ("tps", None, "resnet101", "synthia-seq2cityscapes-seq"),
    ("authors-video-cnn", None, "resnet101", "viper2cityscapes-seq"),
    ("authors-video-vit", None, "mit_b5", "synthia-seq2cityscapes-seq"),
    ("daformer", "gtav2cityscapes", "mit_b5", "gtav2cityscapes"),
])
def test_the_released_networks_map_onto_the_paper_variants(fmt, benchmark, variant, expected):
    """At the releases' own sizes (ResNet-101, MiT-B5; meta tensors, nothing allocated) every key
    of the file is consumed or dropped and the student has exactly the udass network's keys."""
    from udass.models import build_model

    classes = {"synthia-seq2cityscapes-seq": 12, "viper2cityscapes-seq": 15, "gtav2cityscapes": 19}[expected]
    with torch.device("meta"):
        if fmt in ("tps", "authors-video-cnn"):
            state = AccelDeepLab(classes, authors_head=fmt == "authors-video-cnn").state_dict()
        elif fmt == "authors-video-vit":
            state = DAFormerTPS(MiT(), DAFormerHead(classes, fusion_layer=True)).state_dict()
        else:
            state = daformer_uda_state(*(EncoderDecoder(MiT(), DAFormerHead(classes)) for _ in range(3)))
        own = build_model("cnn" if "cnn" in fmt or fmt == "tps" else "vit", classes, variant,
                          temporal_fusion=fmt != "daformer").state_dict()
    conv = convert_state(fmt, state, benchmark=benchmark)
    assert (conv.info["variant"], conv.config.data.benchmark) == (variant, expected)
    assert conv.config.model.temporal_fusion == (fmt != "daformer")
    dropped = sum(k.startswith("imnet_model.") for k in state)
    assert conv.info["keys_consumed"] + dropped == len(state)
    assert dropped == (len(state) // 3 if fmt == "daformer" else 0)
    assert list(conv.student) == list(own) and list(conv.teacher) == list(own)
    assert all(conv.student[k].shape == own[k].shape for k in own)
    assert (conv.teacher is conv.student) == (fmt != "daformer")


# ------------------------------------------------------------------- round trips on outputs
@pytest.mark.parametrize("fmt", ["tps", "authors-video-cnn"])
def test_the_video_cnn_round_trips_to_the_release_outputs(tmp_path, gen, bottleneck_tiny, fmt):
    authors = fmt == "authors-video-cnn"
    rel = randomize(AccelDeepLab(12, authors_head=authors, mid=8, **TINY_RESNET), gen)
    state = rel.state_dict()
    dst, info = _convert(tmp_path, fmt, state, profile="test", overrides={"data.flow_source": "authors"})
    assert info["keys_consumed"] == len(state) and info["dropped"] == {}
    net, cfg, ckpt = load_network(dst, "student")
    assert (cfg.model.variant, cfg.data.benchmark, net.normalize.style, cfg.data.flow_source) == (
        "resnet_bottleneck_tiny", "synthia-seq2cityscapes-seq", "caffe", "authors")
    s = {k[4:]: v for k, v in ckpt["student"].items()}
    for udass_key, release_key in (
            ("encoder.layer3.0.downsample.1.running_var", "layer3.0.downsample.1.running_var"),
            ("encoder.layer4.0.conv2.weight", "layer4.0.conv2.weight"),
            ("decoder.aux_classifier.conv2d_list.2.bias", "layer5.conv2d_list.2.bias"),
            ("temporal.conv.weight", "sf_layer.weight")):
        assert torch.equal(s[udass_key], state[release_key]), udass_key
    if not authors:
        assert torch.equal(s["decoder.classifier.conv2d_list.3.weight"], state["layer6.conv2d_list.3.weight"])
    frames, flows = _clip(gen)
    with torch.no_grad():
        out = net(frames, flows)
        main_t, aux_t = rel.frame(caffe_input(frames[:, 0]))
        _close(out["logits_t"], main_t)
        _close(out["aux"], aux_t)
        _close(out["logits"], rel(caffe_input(frames[:, 0]), caffe_input(frames[:, 1])))
    assert torch.equal(ckpt["teacher"]["temporal.conv.weight"], s["temporal.conv.weight"])


def test_the_authors_video_vit_round_trips_to_the_release_outputs(tmp_path, gen):
    rel = randomize(DAFormerTPS(MiT(**TINY_MIT), DAFormerHead(15, fusion_layer=True, **TINY_HEAD)), gen)
    state = rel.state_dict()
    dst, info = _convert(tmp_path, "authors-video-vit", state, profile="test")
    assert info["keys_consumed"] == len(state)
    net, cfg, ckpt = load_network(dst, "student")
    assert (cfg.model.variant, cfg.data.benchmark, net.normalize.style) == (
        "mit_tiny", "viper2cityscapes-seq", "caffe")
    s = {k[4:]: v for k, v in ckpt["student"].items()}
    assert torch.equal(s["decoder.embed.2.weight"][:, :, 0, 0], state["decoder.embed_layers.2.proj.weight"])
    aspp = "decoder.fuse_layer.aspp_modules"
    for udass_key, release_key in (
            ("encoder.block3.0.attn.sr.weight", "model.block3.0.attn.sr.weight"),
            ("encoder.block1.0.mlp.dwconv.dwconv.bias", "model.block1.0.mlp.dwconv.dwconv.bias"),
            ("decoder.fuse.branches.0.1.running_mean", f"{aspp}.0.bn.running_mean"),
            ("decoder.fuse.branches.2.pointwise.0.weight", f"{aspp}.2.pointwise_conv.conv.weight"),
            ("decoder.fuse.branches.3.depthwise.1.bias", f"{aspp}.3.depthwise_conv.bn.bias"),
            ("decoder.fuse.bottleneck.1.weight", "decoder.fuse_layer.bottleneck.bn.weight"),
            ("decoder.conv_seg.bias", "decoder.conv_seg.bias"),
            ("temporal.conv.weight", "decoder.sf_layer.weight")):
        assert torch.equal(s[udass_key], state[release_key]), udass_key
    frames, flows = _clip(gen)
    with torch.no_grad():
        out = net(frames, flows)
        _close(out["logits_t"], rel.frame(caffe_input(frames[:, 0])))
        _close(out["logits"], rel(caffe_input(frames[:, 0]), caffe_input(frames[:, 1])))


def test_daformer_round_trips_student_and_ema_teacher_and_drops_the_imagenet_copy(tmp_path, gen):
    nets = [randomize(EncoderDecoder(MiT(**TINY_MIT), DAFormerHead(19, **TINY_HEAD)), gen) for _ in range(3)]
    state = daformer_uda_state(*nets)
    dst, info = _convert(tmp_path, "daformer", {"state_dict": state, "meta": {"iter": 40000}},
                         benchmark="gtav2cityscapes", profile="test")
    imnet = sum(k.startswith("imnet_model.") for k in state)
    assert info["keys_consumed"] == len(state) - imnet and "imnet_model." in info["dropped"]
    assert info["teacher_from"].startswith("ema_model.") and info["step"] == 40000
    frames = torch.rand(2, 1, 3, 64, 96, generator=gen)   # images: one-frame clips
    for network, release in (("student", nets[0]), ("teacher", nets[1])):
        net, cfg, _ = load_network(dst, network)
        assert net.temporal is None and net.normalize.style == "imagenet"
        with torch.no_grad():
            _close(net(frames, torch.zeros(2, 0, 2, 64, 96))["logits"], release(mmseg_input(frames[:, 0])))
    # a plain mmseg segmentor (no UDA wrapper) is the student alone
    plain = tmp_path / "plain"
    plain.mkdir()
    _, info = _convert(plain, "daformer", nets[2].state_dict(), benchmark="synthia2cityscapes")
    assert info["student_from"] == "backbone.* and decode_head.*" and info["dropped"] == {}


# ------------------------------------------------------------------- end to end
def test_convert_then_evaluate_and_segment(tmp_path, gen, tiny_video_root):
    rel = randomize(DAFormerTPS(MiT(**TINY_MIT), DAFormerHead(12, fusion_layer=True, **TINY_HEAD)), gen)
    src, dst = tmp_path / "release.pth", tmp_path / "udass.pt"
    torch.save(rel.state_dict(), src)
    assert main(["convert", "--from", "authors-video-vit", str(src), "-o", str(dst),
                 "--benchmark", "synthetic-video", "--profile", "test"]) == 0
    assert main(["evaluate", "--checkpoint", str(dst), "--data-root", str(tiny_video_root),
                 "--out", str(tmp_path / "eval")]) == 0
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["converted_from"] == "authors-video-vit" and m["benchmark"] == "synthetic-video"
    assert 0.0 <= m["miou"] <= 100.0 and m["teacher"]["miou"] == m["miou"]   # one network: both
    frames = tmp_path / "frames"
    frames.mkdir()
    for p in sorted((tiny_video_root / "cityscapes" / "leftImg8bit_sequence" / "val").glob("*/*.png"))[:2]:
        (frames / p.name).write_bytes(p.read_bytes())
    assert main(["segment", str(frames), "--checkpoint", str(dst), "-o", str(tmp_path / "seg")]) == 0
    assert len([p for p in (tmp_path / "seg").glob("*.png") if p.name != "legend.png"]) == 2
    c = load_checkpoint(dst)["converted"]
    assert c["source"] == str(src.resolve()) and len(c["sha256"]) == 64


def test_a_one_network_release_is_evaluated_once_and_two_networks_twice(tmp_path, gen, tiny_video_root,
                                                                         monkeypatch):
    """A converted one-network release stores its weights as student and teacher: `udass evaluate`
    scores it in one pass (the teacher's numbers are the same network's); a checkpoint whose
    teacher differs gets its own pass."""
    import udass.evaluate as ev
    from udass.checkpoint import save_checkpoint

    rel = randomize(DAFormerTPS(MiT(**TINY_MIT), DAFormerHead(12, fusion_layer=True, **TINY_HEAD)), gen)
    src, dst = tmp_path / "release.pth", tmp_path / "udass.pt"
    torch.save(rel.state_dict(), src)
    assert main(["convert", "--from", "authors-video-vit", str(src), "-o", str(dst),
                 "--benchmark", "synthetic-video", "--profile", "test"]) == 0
    calls = []
    real = ev.evaluate_model
    monkeypatch.setattr(ev, "evaluate_model", lambda *a, **k: calls.append(k.get("desc")) or real(*a, **k))
    args = ["evaluate", "--checkpoint", str(dst), "--data-root", str(tiny_video_root)]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert calls == ["evaluate student"] and one["teacher"]["miou"] == one["miou"]
    state = load_checkpoint(dst)
    name = next(k for k, v in state["teacher"].items() if v.is_floating_point())
    state["teacher"] = {**state["teacher"], name: state["teacher"][name] + 1.0}
    two_ckpt = tmp_path / "two.pt"
    save_checkpoint(two_ckpt, state)
    calls.clear()
    assert main(["evaluate", "--checkpoint", str(two_ckpt), "--data-root", str(tiny_video_root)]) == 0
    assert calls == ["evaluate student", "evaluate teacher"]


# ------------------------------------------------------------------- refusals
def _tps_state(gen: torch.Generator, **kw) -> dict:
    return AccelDeepLab(12, **{**TINY_RESNET, **kw}).state_dict()


@pytest.mark.parametrize("case, message", [
    ("unknown", "unknown checkpoint format (--from) 'tpz' (did you mean 'tps'?)"),
    ("mic", "needs the HRDA head"),
    ("authors-image", "not available yet"),
    ("hrda-file", "its decode head is an HRDA head (model.decode_head.scale_attention."),
    ("wrong-format", "not in the daformer layout: missing model.backbone.patch_embed1.proj.weight"),
    ("missing", "1 missing (layer5.conv2d_list.1.weight)"),
    ("unexpected", "1 keys of the tps checkpoint map to nothing in udass (d_main.conv1.weight)"),
    ("shape", "shape mismatches, file vs udass (sf_layer.weight (12, 24, 3, 3)"),
    ("no-variant", "(bottleneck ResNet, blocks (2, 1, 1, 1), width 4) is no udass cnn variant"),
    ("ambiguous", "19 classes fit gtav2cityscapes and synthia2cityscapes; pass --benchmark"),
    ("classes", "--benchmark viper2cityscapes-seq has 15 classes, the tps checkpoint predicts 12"),
    ("pickle", "holds Python objects beyond tensors"),
    ("set-model", "--set model.variant: the model of a converted checkpoint is the release's"),
    ("absent", "does not exist"),
])
def test_refusals_are_one_line(tmp_path, gen, capsys, bottleneck_tiny, case, message):
    fmt, extra = "tps", []
    state = _tps_state(gen)
    if case == "unknown":
        fmt = "tpz"
    elif case in ("mic", "authors-image"):
        fmt = case
    elif case == "hrda-file":
        fmt = "daformer"
        state = {"model.backbone.patch_embed1.proj.weight": torch.zeros(8, 3, 7, 7),
                 "model.decode_head.scale_attention.conv_seg.weight": torch.zeros(19, 16, 1, 1),
                 "model.decode_head.conv_seg.weight": torch.zeros(19, 16, 1, 1)}
    elif case == "wrong-format":
        fmt = "daformer"
    elif case == "missing":
        del state["layer5.conv2d_list.1.weight"]
    elif case == "unexpected":
        state["d_main.conv1.weight"] = torch.zeros(1)
    elif case == "shape":
        state["sf_layer.weight"] = torch.zeros(12, 24, 3, 3)
    elif case == "no-variant":
        state = _tps_state(gen, layers=(2, 1, 1, 1))
    elif case == "ambiguous":
        fmt, state = "daformer", EncoderDecoder(MiT(**TINY_MIT), DAFormerHead(19, **TINY_HEAD)).state_dict()
    elif case == "classes":
        extra = ["--benchmark", "viper2cityscapes-seq"]
    elif case == "set-model":
        extra = ["--set", "model.variant=resnet101"]
    elif case == "pickle":
        state = {"state_dict": state, "meta": {"args": argparse.Namespace(lr=0.1)}}
    src = tmp_path / "release.pth"
    if case != "absent":
        torch.save(state, src)
    assert main(["convert", "--from", fmt, str(src), "-o", str(tmp_path / "out.pt"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("udass: error:") and message in err and "\n" not in err, err
    assert not (tmp_path / "out.pt").exists()
    if case == "pickle":   # the user vouches for the file: it converts
        assert main(["convert", "--from", "tps", str(src), "-o", str(tmp_path / "out.pt"),
                     "--trust-pickle"]) == 0
        assert load_checkpoint(tmp_path / "out.pt")["converted"]["format"] == "tps"
