"""udass.models: variants, the clip forward contract, temporal fusion, strict checkpoint loading."""
from __future__ import annotations

import math

import pytest
import torch

from udass.errors import UdassError
from udass.models import (VARIANTS, TemporalFusion, build_model, count_parameters, load_pretrained,
                          variants)
from udass.models.resnet import FrozenBatchNorm2d

SMALL = [("cnn", "resnet_tiny"), ("cnn", "resnet_mini"), ("vit", "mit_tiny"), ("vit", "mit_mini")]


def clip(b: int = 2, k: int = 2, h: int = 32, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(b, k, 3, h, w, generator=g)
    flows = torch.randn(b, max(k - 1, 0), 2, h, w, generator=g) * 2.0
    return frames, flows


def cnn_grid(n: int) -> int:
    """DeepLab ceil-mode grid: conv1 stride 2, max-pool 3/2/1 in ceil mode, 1 x 1 stride 2."""
    n1 = math.ceil(n / 2)
    n2 = math.ceil((n1 - 1) / 2) + 1
    if (n2 - 1) * 2 >= n1 + 1:  # PyTorch: the last window must start inside the input
        n2 -= 1
    return math.ceil(n2 / 2)


def perturb_fusion(model: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.temporal.conv.weight
        w.add_(0.3 * torch.randn(w.shape, generator=g))


# ------------------------------------------------------------------------------ variants
def test_paper_and_published_parameter_counts_on_meta_device():
    with torch.device("meta"):
        counts = {n: count_parameters(build_model(v.backbone, 19, n).encoder)
                  for n, v in VARIANTS.items() if not n.endswith(("_tiny", "_mini"))}
    # torchvision ImageNet ResNets minus their fc layer, exactly
    assert counts["resnet101"] == 44_549_160 - 2_049_000  # 42.5 M
    assert counts["resnet50"] == 25_557_032 - 2_049_000
    assert counts["resnet18"] == 11_689_512 - 513_000
    # SegFormer paper: MiT-B0 3.4 M ... MiT-B5 81.4 M (encoder only)
    assert 81.0e6 < counts["mit_b5"] < 82.0e6
    for name, published in (("mit_b0", 3.4e6), ("mit_b1", 13.1e6), ("mit_b2", 24.2e6),
                            ("mit_b3", 44.0e6), ("mit_b4", 60.8e6)):
        assert abs(counts[name] - published) / published < 0.03, name


def test_small_variants_are_small():
    for backbone, name in SMALL:
        n = count_parameters(build_model(backbone, 19, name))
        assert n < (1.2e6 if name.endswith("mini") else 0.2e6), (name, n)


@pytest.mark.parametrize("backbone,name", SMALL)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_output_shapes_and_strides(backbone, name, k):
    model = build_model(backbone, 5, name).eval()
    h, w = 40, 72
    frames, flows = clip(2, k, h, w)
    with torch.no_grad():
        out = model(frames, flows)
    grid = (cnn_grid(h), cnn_grid(w)) if backbone == "cnn" else (math.ceil(h / 4), math.ceil(w / 4))
    for key in ("logits", "logits_t", "logits_prev"):
        assert out[key].shape == (2, 5, *grid), key
    for key in ("features", "features_prev"):
        assert out[key].shape == (2, model.feature_dim, *grid), key
    if backbone == "cnn":
        assert out["aux"].shape == (2, 5, *grid) and model.output_stride == 8
    else:
        assert out["aux"] is None and model.output_stride == 4
    assert (model.num_classes, model.backbone_name, model.variant) == (5, backbone, name)


def test_cnn_grid_of_the_paper_resolution_is_deeplabs():
    assert (cnn_grid(512), cnn_grid(1024)) == (65, 129)
    with torch.device("meta"):
        out = build_model("cnn", 19, "resnet101")(torch.empty(1, 1, 3, 512, 1024),
                                                  torch.empty(1, 0, 2, 512, 1024))
    assert out["logits"].shape == (1, 19, 65, 129) and out["features"].shape[1] == 2048


def test_segformer_head_option_and_feature_dims():
    model = build_model("vit", 4, "mit_tiny", head="segformer").eval()
    out = model(*clip(1, 1))
    assert type(model.decoder).__name__ == "SegFormerHead"
    assert out["features"].shape[1] == model.feature_dim == VARIANTS["mit_tiny"].decoder["segformer_dim"]
    with torch.device("meta"):
        assert build_model("vit", 4, "mit_b5").feature_dim == 256
        assert build_model("vit", 4, "mit_b5", head="segformer").feature_dim == 768


def test_classify_maps_features_to_frame_logits():
    for backbone, name in SMALL[::2]:
        model = build_model(backbone, 6, name).eval()
        with torch.no_grad():
            out = model(*clip(2, 2))
            assert torch.allclose(model.classify(out["features"]), out["logits_t"], atol=1e-6)


def test_build_model_errors_name_the_choices():
    with pytest.raises(UdassError, match="cnn, vit"):
        build_model("transformer", 19, "mit_b5")
    with pytest.raises(UdassError, match="resnet101"):
        build_model("cnn", 19, "resnet102")
    with pytest.raises(UdassError, match="belongs to backbone 'vit'.*resnet_mini"):
        build_model("cnn", 19, "mit_b5")
    with pytest.raises(UdassError, match="bn, drop_path, head, temporal_fusion"):
        build_model("vit", 19, "mit_tiny", dropout=0.1)
    with pytest.raises(UdassError, match="daformer, segformer"):
        build_model("vit", 19, "mit_tiny", head="uper")
    with pytest.raises(UdassError, match="num_classes"):
        build_model("vit", 0, "mit_tiny")
    assert set(variants("cnn")) | set(variants("vit")) == set(VARIANTS)


def test_inputs_are_normalised_with_imagenet_statistics_inside():
    model = build_model("vit", 3, "mit_tiny")
    x = torch.rand(1, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), (x - mean) / std)
    assert model.normalize.style == "imagenet"


# ------------------------------------------------------------------------------ temporal fusion
@pytest.mark.parametrize("backbone,name", SMALL[::2])
def test_fusion_at_initialisation_is_the_current_frame(backbone, name):
    model = build_model(backbone, 5, name).eval()
    with torch.no_grad():
        out = model(*clip(2, 2))
    assert torch.allclose(out["logits"], out["logits_t"], atol=1e-6)
    assert not torch.allclose(out["logits_prev"], out["logits_t"])


@pytest.mark.parametrize("backbone,name", SMALL[::2])
def test_static_clip_with_zero_flow_fuses_the_frame_with_itself(backbone, name):
    model = build_model(backbone, 5, name).eval()
    perturb_fusion(model)
    frames, _ = clip(2, 1)
    two = frames.repeat(1, 2, 1, 1, 1)
    with torch.no_grad():
        one = model(frames, torch.zeros(2, 0, 2, 32, 64))
        pair = model(two, torch.zeros(2, 1, 2, 32, 64))
        z = one["logits_t"]
        expected = model.temporal.fuse(z, z)
    assert not torch.allclose(expected, z, atol=1e-3)  # the perturbation matters
    assert torch.allclose(one["logits"], expected, atol=1e-5)
    assert torch.allclose(pair["logits"], expected, atol=1e-4)


def test_fusion_warps_previous_logits_with_the_flow_resized_and_scaled():
    fusion = TemporalFusion(2)
    with torch.no_grad():  # W = [0 | I]: output = warped previous logits
        fusion.conv.weight.zero_()
        fusion.conv.weight[:, 2:, 0, 0].copy_(torch.eye(2))
    prev = torch.arange(2 * 8 * 16, dtype=torch.float32).view(1, 2, 8, 16)
    flow = torch.zeros(1, 2, 32, 64)
    flow[:, 0] = 8.0  # 8 input pixels = 2 cells on the 8 x 16 logit grid
    out = fusion(torch.zeros_like(prev), prev, flow)
    assert torch.allclose(out[..., :-2], prev[..., 2:], atol=1e-4)


def test_fusion_can_be_switched_off():
    model = build_model("vit", 5, "mit_tiny", temporal_fusion=False).eval()
    out = model(*clip(2, 2))
    assert model.temporal is None and out["logits"] is out["logits_t"]


# ------------------------------------------------------------------------------ frames t and t-1
class EncoderCalls:
    def __init__(self, model: torch.nn.Module) -> None:
        self.batches: list[int] = []
        self.handle = model.encoder.register_forward_hook(
            lambda mod, inp, out: self.batches.append(inp[0].shape[0]))


@pytest.mark.parametrize("backbone,name", SMALL[::2])
def test_one_frame_clip_runs_the_network_once(backbone, name):
    model = build_model(backbone, 5, name).train()
    calls = EncoderCalls(model)
    out = model(*clip(2, 1))
    assert calls.batches == [2]
    assert out["logits_prev"] is out["logits_t"] and out["features_prev"] is out["features"]
    model(*clip(2, 2))
    assert calls.batches == [2, 2, 2]


@pytest.mark.parametrize("backbone,name", SMALL[::2])
def test_previous_frame_outputs_are_its_own_and_gradient_free_in_training(backbone, name):
    model = build_model(backbone, 5, name)
    frames, flows = clip(2, 3)
    model.eval()
    with torch.no_grad():
        out = model(frames, flows)
        alone = model.segment(frames[:, 1])
    assert torch.allclose(out["logits_prev"], alone.logits, atol=1e-6)
    assert torch.allclose(out["features_prev"], alone.features, atol=1e-6)
    model.train()
    out = model(frames, flows)
    assert out["logits_t"].requires_grad and out["features"].requires_grad
    assert not out["logits_prev"].requires_grad and not out["features_prev"].requires_grad
    assert out["logits"].requires_grad


def test_one_frame_clip_trains_like_a_static_two_frame_clip():
    """Same function AND same gradients at half the cost (frozen BN: deterministic training)."""
    model = build_model("cnn", 5, "resnet_tiny", bn="frozen").train()
    perturb_fusion(model)
    frames, _ = clip(2, 1)
    grads = []
    for k in (1, 2):
        model.zero_grad()
        out = model(frames.repeat(1, k, 1, 1, 1), torch.zeros(2, k - 1, 2, 32, 64))
        (out["logits"] ** 2).mean().backward()
        grads.append([p.grad.clone() for p in model.param_groups()["backbone"]])
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(*grads))


@pytest.mark.parametrize("backbone,name", [("cnn", "resnet_mini"), ("vit", "mit_mini")])
def test_forward_backward_of_the_small_variants_at_256x128(backbone, name):
    model = build_model(backbone, 7, name, bn="batch").train()
    frames, flows = clip(2, 2, 128, 256)
    out = model(frames, flows)
    labels = torch.randint(0, 7, out["logits"].shape[:1] + out["logits"].shape[2:])
    loss = torch.nn.functional.cross_entropy(out["logits"], labels)
    if out["aux"] is not None:
        loss = loss + 0.1 * torch.nn.functional.cross_entropy(out["aux"], labels)
    loss.backward()
    groups = model.param_groups()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in groups["backbone"])
    assert model.temporal.conv.weight.grad.abs().sum() > 0


def test_param_groups_split_encoder_heads_and_fusion():
    model = build_model("cnn", 5, "resnet_tiny", bn="batch")
    groups = model.param_groups()
    ids = {k: {id(p) for p in v} for k, v in groups.items()}
    trainable = {id(p) for p in model.encoder.parameters() if p.requires_grad}
    assert ids["backbone"] == trainable
    assert not ids["backbone"] & ids["head"] and not ids["head"] & ids["fusion"]
    assert ids["backbone"] | ids["head"] | ids["fusion"] == {id(p) for p in model.parameters()
                                                            if p.requires_grad}
    assert ids["fusion"] == {id(model.temporal.conv.weight)}
    assert build_model("cnn", 5, "resnet_tiny", temporal_fusion=False).param_groups()["fusion"] == []


def test_frozen_batch_norm_keeps_statistics_in_train_mode():
    frozen = build_model("cnn", 5, "resnet_tiny", bn="frozen").train()
    bns = [m for m in frozen.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(isinstance(m, FrozenBatchNorm2d) and not m.training for m in bns)
    before = {k: v.clone() for k, v in frozen.encoder.state_dict().items()}
    out = frozen(*clip(2, 2))
    out["logits"].sum().backward()
    after = frozen.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for m in bns for p in m.parameters())
    assert {id(p) for p in frozen.param_groups()["backbone"]}.isdisjoint(
        {id(p) for m in bns for p in m.parameters()})
    trained = build_model("cnn", 5, "resnet_tiny", bn="batch").train()
    trained(*clip(2, 1))
    assert not torch.equal(trained.encoder.bn1.running_mean, torch.zeros_like(trained.encoder.bn1.running_mean))


def test_drop_path_grows_linearly_over_the_blocks():
    model = build_model("vit", 5, "mit_b0", drop_path=0.2)
    rates = [blk.drop_path.p for i in range(1, 5) for blk in getattr(model.encoder, f"block{i}")]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)


# ------------------------------------------------------------------------------ checkpoints
MIT_KEYS = ["patch_embed1.proj.weight", "patch_embed1.norm.weight", "block1.0.norm1.weight",
            "block1.0.attn.q.weight", "block1.0.attn.kv.weight", "block1.0.attn.sr.weight",
            "block1.0.attn.norm.weight", "block1.0.attn.proj.weight", "block1.0.mlp.fc1.weight",
            "block1.0.mlp.dwconv.dwconv.weight", "block1.0.mlp.fc2.weight", "block1.0.norm2.bias",
            "norm1.weight", "patch_embed4.proj.weight", "block4.1.attn.kv.bias", "norm4.bias"]
RESNET_KEYS = ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
               "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
               "layer2.0.conv1.weight", "layer3.5.bn2.weight", "layer4.2.conv3.weight"]


def test_encoder_keys_follow_the_released_layouts():
    with torch.device("meta"):
        mit = build_model("vit", 19, "mit_b0").encoder.state_dict()
        res = build_model("cnn", 19, "resnet50").encoder.state_dict()
    assert set(MIT_KEYS) <= set(mit) and "block1.0.attn.sr.weight" in mit
    assert "block4.0.attn.sr.weight" not in mit  # sr ratio 1: no reduction
    assert set(RESNET_KEYS) <= set(res)
    assert res["layer2.0.conv1.weight"].shape == (128, 256, 1, 1)  # stride in the 1 x 1 conv


def fake_imagenet_file(tmp_path, name, backbone, variant, extra, prefix="", wrap=None, **opts):
    src = build_model(backbone, 19, variant, **opts)
    state = {prefix + k: v.clone() for k, v in src.encoder.state_dict().items()}
    state.update(extra)
    obj = {wrap: state} if wrap else state
    path = tmp_path / name
    torch.save(obj, path)
    return src, path


def assert_same_encoder(a, b):
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_segformer_layout_loads_with_its_imagenet_head(tmp_path):
    src, path = fake_imagenet_file(tmp_path, "mit_b0.pth", "vit", "mit_tiny",
                                   {"head.weight": torch.zeros(1000, 64), "head.bias": torch.zeros(1000)})
    model = build_model("vit", 19, "mit_tiny")
    load_pretrained(model, path)
    assert_same_encoder(src, model)
    assert model.normalize.style == "imagenet"


def test_torchvision_layout_loads_with_fc_and_without_num_batches_tracked(tmp_path):
    src = build_model("cnn", 19, "resnet_tiny", bn="batch")
    state = {k: v for k, v in src.encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    state.update({"fc.weight": torch.zeros(1000, 64), "fc.bias": torch.zeros(1000)})
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "r.pth")
    model = build_model("cnn", 19, "resnet_tiny")
    load_pretrained(model, tmp_path / "r.pth")
    assert_same_encoder(src, model)
    assert model.normalize.style == "imagenet"


def test_deeplab_imagenet_layout_loads_and_switches_to_caffe_input(tmp_path):
    src, path = fake_imagenet_file(tmp_path, "DeepLab_resnet_pretrained_imagenet.pth", "cnn",
                                   "resnet_tiny", {"Scale.layer5.conv2d_list.0.weight":
                                                   torch.zeros(21, 64, 3, 3)}, prefix="Scale.")
    model = build_model("cnn", 19, "resnet_tiny")
    load_pretrained(model, path)
    assert_same_encoder(src, model)
    assert model.normalize.style == "caffe"
    x = torch.rand(1, 3, 2, 2)
    bgr_mean = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), x.flip(1) * 255 - bgr_mean, atol=1e-4)
    again = build_model("cnn", 19, "resnet_tiny")  # the convention travels in the state dict
    again.load_state_dict(model.state_dict())
    assert again.normalize.style == "caffe"


def test_saved_model_loads_back_strictly_and_a_renamed_key_is_named(tmp_path):
    src, path = fake_imagenet_file(tmp_path, "own.pth", "vit", "mit_tiny", {}, wrap="model")
    model = build_model("vit", 19, "mit_tiny")
    load_pretrained(model, path)
    assert_same_encoder(src, model)
    full = build_model("vit", 19, "mit_tiny")
    full.load_state_dict(src.state_dict(), strict=True)
    state = src.encoder.state_dict()
    state["block1.0.attn.query.weight"] = state.pop("block1.0.attn.q.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(UdassError) as err:
        load_pretrained(model, tmp_path / "renamed.pth")
    msg = str(err.value)
    assert "block1.0.attn.q.weight" in msg and "block1.0.attn.query.weight" in msg
    assert "missing" in msg and "unexpected" in msg and "\n" not in msg


def test_a_checkpoint_of_another_architecture_is_refused_with_its_shapes(tmp_path):
    _, path = fake_imagenet_file(tmp_path, "tiny.pth", "vit", "mit_tiny", {})
    with pytest.raises(UdassError, match="shape mismatches.*patch_embed1.proj.weight"):
        load_pretrained(build_model("vit", 19, "mit_mini"), path)
    _, path = fake_imagenet_file(tmp_path, "cnn.pth", "cnn", "resnet_tiny", {"head.weight": torch.zeros(2)})
    with pytest.raises(UdassError, match="unexpected.*head.weight"):
        load_pretrained(build_model("cnn", 19, "resnet_tiny"), path)


def test_missing_or_unreadable_weights_say_where_to_get_them(tmp_path):
    with pytest.raises(UdassError, match="SegFormer.*mit_b5.pth.*downloads nothing"):
        load_pretrained(_meta_model("vit", "mit_b5"), tmp_path / "mit_b5.pth")
    with pytest.raises(UdassError, match="DeepLab_resnet_pretrained_imagenet.pth.*torchvision"):
        load_pretrained(_meta_model("cnn", "resnet101"), tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UdassError, match="cannot read"):
        load_pretrained(build_model("vit", 19, "mit_tiny"), tmp_path / "junk.pth")


def _meta_model(backbone: str, variant: str):
    with torch.device("meta"):
        return build_model(backbone, 19, variant)


def test_batch_mode_batch_norm_trains_on_batch_statistics_with_frozen_affine_parameters():
    """model.bn = "batch" (the paper's CNN recipe, as ADVENT / TPS): in train mode the encoder's
    batch norms normalise with the batch's statistics and update their running statistics; the
    affine parameters never train. "frozen" always uses the stored statistics."""
    torch.manual_seed(0)
    frames, flows = clip(2, 1)
    batch = build_model("cnn", 5, "resnet_tiny", bn="batch")
    frozen = build_model("cnn", 5, "resnet_tiny", bn="frozen")
    frozen.load_state_dict(batch.state_dict())
    bns = [m for m in batch.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(type(m) is torch.nn.BatchNorm2d for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    trainable = {id(p) for ps in batch.param_groups().values() for p in ps}
    assert trainable.isdisjoint({id(p) for m in bns for p in m.parameters()})
    with torch.no_grad():
        batch.eval()
        stored = batch(frames, flows)["logits"]
        batch.train()
        before = bns[0].running_mean.clone()
        trained = batch(frames, flows)["logits"]
        frozen.train()
        frozen_out = frozen(frames, flows)["logits"]
    assert not torch.allclose(trained, stored, atol=1e-3)          # batch statistics in training
    assert not torch.equal(bns[0].running_mean, before)            # running statistics updated
    assert torch.allclose(frozen_out, stored, atol=1e-6)           # frozen: stored statistics
    with pytest.raises(UdassError, match="batch, frozen"):
        build_model("cnn", 5, "resnet_tiny", bn="sync")
