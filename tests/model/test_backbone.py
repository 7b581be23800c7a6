"""convnet.type: backbone: torchvision architectures under torchvision's names, truncated, loaded from a local file.

The architecture fingerprints (every kept tensor's name and shape, in order) and the reference outputs below were
taken from torchvision 0.28.0 (``torchvision.models.<arch>(weights=None).state_dict()`` without ``fc`` /
``classifier``; the outputs of its own modules on the deterministic weights and input of :func:`_det`), in a scratch
environment outside the repository. neurotrain does not depend on torchvision.
"""

import hashlib
import zlib

import pytest
import torch
from safetensors.torch import save_file

from neurotrain.errors import ModelConfigError
from neurotrain.model import build_model
from neurotrain.model.backbone import RESNETS, VGGS, BackboneCore, ResNetBody, VGGBody, vgg_layer_names
from neurotrain.model.shapes import trace_shapes

TORCHVISION = {  # arch -> (number of tensors, sha256 of "name:shape" lines)[:16], torchvision 0.28.0
    "resnet18": (120, "2f27d672f41dca1e"),
    "resnet34": (216, "f995a754f0282ce0"),
    "resnet50": (318, "8766eb3ab43ff7d2"),
    "resnet101": (624, "ad5a4ae4ffc1d9cd"),
    "resnet152": (930, "50aaa1e2878a7fea"),
    "wide_resnet50_2": (318, "89651647180c8f37"),
    "wide_resnet101_2": (624, "5e5108b07025c6d7"),
    "resnext50_32x4d": (318, "9c176101f0e785ba"),
    "resnext101_32x8d": (624, "a5201772a52b40b3"),
    "vgg11": (16, "ccafb5b5d7a5f33c"),
    "vgg13": (20, "2c4aa18ce7b06ced"),
    "vgg16": (26, "d2469bc95b84299e"),
    "vgg19": (32, "9be0684c97a45c22"),
    "vgg11_bn": (56, "ed5b4b13deeec9de"),
    "vgg13_bn": (70, "d75bd33aeac6d55d"),
    "vgg16_bn": (91, "b33898f44f1468bc"),
    "vgg19_bn": (112, "26399e2027bcf27d"),
}


def _full(arch):
    if arch in RESNETS:
        return ResNetBody(arch, "layer4")
    return VGGBody(arch, len(vgg_layer_names(arch)) - 1)


@pytest.mark.parametrize("arch", sorted(TORCHVISION))
def test_names_and_shapes_are_torchvisions(arch):
    sd = _full(arch).state_dict()
    rows = [f"{k}:{tuple(v.shape)}" for k, v in sd.items()]
    assert (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]) == TORCHVISION[arch]


def _det(sd):
    """Deterministic weights by tensor name (as used for the torchvision reference numbers)."""
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        i = zlib.crc32(k.encode()) % 1000
        w = torch.sin(torch.arange(v.numel(), dtype=torch.float64) * 0.37 + i).float().reshape(v.shape)
        if k.endswith("running_var"):
            w = 1.0 + 0.5 * w.abs()
        elif k.endswith("weight") and v.ndim == 1:
            w = 1.0 + 0.2 * w
        else:
            w = w * (2.0 / max(1, v[0].numel())) ** 0.5
        out[k] = w
    return out


@pytest.mark.parametrize("arch,layer,shape,total,peak", [
    ("resnet18", "layer2", (2, 128, 5, 5), 18197.15129966641, 10.33903980255127),
    ("resnet50", "layer2", (2, 512, 5, 5), 323797.6939589977, 39.59844970703125),
    ("vgg11_bn", "pool5", (2, 512, 1, 1), 1297.759411469102, 4.072094917297363),
])
def test_outputs_match_torchvision_on_the_same_weights(arch, layer, shape, total, peak):
    core = BackboneCore(3, arch=arch, layer=layer, weights="random", input_norm="none")
    core.body.load_state_dict(_det(core.body.state_dict()))
    core.eval()
    x = torch.sin(torch.arange(2 * 3 * 40 * 40, dtype=torch.float64) * 0.011).float().reshape(2, 3, 40, 40)
    with torch.no_grad():
        y = core.body(x)
    assert tuple(y.shape) == shape
    assert float(y.double().sum()) == pytest.approx(total, rel=1e-5)
    assert float(y.abs().max()) == pytest.approx(peak, rel=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_load_from_a_torchvision_style_file_and_later_layers_are_ignored(tmp_path, suffix):
    torch.manual_seed(0)
    full = _full("resnet18")
    sd = {**full.state_dict(), "fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    core = BackboneCore(1, arch="resnet18", layer="layer3.0", weights=str(path))
    mine = core.body.state_dict()
    assert "layer3.0.conv1.weight" in mine and "layer3.1.conv1.weight" not in mine and "layer4.0.bn1.bias" not in mine
    assert all(torch.equal(v, sd[k]) for k, v in mine.items())
    assert core.weights_report.endswith(f"({len(sd) - len(mine)} of later layers ignored)")
    assert core.output_channels == 256


def test_a_file_lacking_a_kept_tensor_or_of_another_shape_is_refused(tmp_path):
    sd = _full("resnet18").state_dict()
    short = tmp_path / "short.pth"
    torch.save({k: v for k, v in sd.items() if not k.startswith("layer2.1.")}, short)
    with pytest.raises(ModelConfigError, match=r"model.convnet.params.weights: .*has no 'layer2.1.conv1.weight'"):
        BackboneCore(3, arch="resnet18", layer="layer2", weights=str(short))
    BackboneCore(3, arch="resnet18", layer="layer2.0", weights=str(short))  # layer2.1 not kept: fine
    other = tmp_path / "r50.pth"
    torch.save(_full("resnet50").state_dict(), other)
    with pytest.raises(ModelConfigError, match=r"'layer1.0.conv1.weight' has shape \(64, 64, 1, 1\)"):
        BackboneCore(3, arch="resnet18", layer="layer1", weights=str(other))
    with pytest.raises(ModelConfigError, match="does not exist .*never downloaded"):
        BackboneCore(3, arch="resnet18", layer="layer1", weights=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelConfigError, match="cannot read weights file"):
        BackboneCore(3, arch="resnet18", layer="layer1", weights=str(bad))


def test_frozen_backbone_has_no_gradients_and_keeps_its_statistics():
    torch.manual_seed(0)
    cfg = {"initial_input_channels": 1, "adapter": {"type": "none"}, "frontend": {"type": "none"},
           "convnet": {"type": "backbone", "params": {"arch": "resnet18", "layer": "layer2", "weights": "random"}},
           "readout": {"type": "gaussian", "params": {}}}
    m = build_model(cfg, [4], input_shape=(1, 1, 32, 32))
    before = {k: v.clone() for k, v in m.convnet.state_dict().items()}
    m.train()
    assert not m.convnet.body.training and all(not mod.training for mod in m.convnet.body.modules())
    out = m(torch.rand(3, 1, 1, 32, 32) - 0.5, 0)
    out.sum().backward()
    assert all(not p.requires_grad and p.grad is None for p in m.convnet.parameters())
    assert m.readouts[0].features.weight.grad is not None
    assert all(torch.equal(before[k], v) for k, v in m.convnet.state_dict().items())  # running stats unchanged


def test_partly_frozen_fine_tuning_and_batchnorm_modes():
    core = BackboneCore(3, arch="resnet18", layer="layer2", weights="random", frozen=["conv1", "bn1", "layer1"])
    trainable = {n for n, p in core.body.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layer2.") for n in trainable)
    core.train()
    assert not core.body.layer1.training and core.body.layer2.training
    assert not core.body.layer2[0].bn1.training  # batchnorm: frozen (the default) keeps statistics fixed
    live = BackboneCore(3, arch="resnet18", layer="layer2", weights="random", frozen=False, batchnorm="train").train()
    assert all(p.requires_grad for p in live.parameters()) and live.body.layer2[0].bn1.training
    with pytest.raises(ModelConfigError, match=r"frozen: 'layer5' is no module"):
        BackboneCore(3, arch="resnet18", layer="layer2", weights="random", frozen=["layer5"])


def test_input_normalisation_grey_is_rgb_with_equal_channels():
    core = BackboneCore(1, arch="vgg11", layer="conv2_1", weights="random").eval()
    rgb = BackboneCore(3, arch="vgg11", layer="conv2_1", weights="random").eval()
    rgb.load_state_dict(core.state_dict())
    grey = torch.rand(2, 1, 1, 24, 24) - 127 / 255  # neurotrain's (x - 127) / 255 of uint8 pixels
    with torch.no_grad():
        assert torch.equal(core(grey), rgb(grey.expand(-1, 3, -1, -1, -1)))
        x = torch.zeros(1, 3, 24, 24)  # a mid-grey 127 pixel is 127/255 in [0, 1]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        assert torch.allclose(rgb.normalize(x), (127 / 255 - mean) / std)


def test_vgg_layer_names_and_truncation():
    names = vgg_layer_names("vgg16")
    assert names[:7] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1"]
    assert names.index("conv4_3") == 21 and names.index("relu4_3") == 22 and names[-1] == "pool5" and len(names) == 31
    assert vgg_layer_names("vgg16_bn")[:3] == ["conv1_1", "bn1_1", "relu1_1"]
    core = BackboneCore(3, arch="vgg16", layer="conv4_3", weights="random")
    assert len(core.body.features) == 22 and core.output_channels == 512
    assert BackboneCore(3, arch="vgg16", layer="features.15", weights="random").output_channels == 256


@pytest.mark.parametrize("params,key,msg", [
    ({"arch": "resnet19", "layer": "layer1", "weights": "random"}, "arch", "unknown type 'resnet19'"),
    ({"arch": "resnet18", "layer": "layer5", "weights": "random"}, "layer", "expected one of"),
    ({"arch": "resnet18", "layer": "layer1.2", "weights": "random"}, "layer", "blocks 0..1"),
    ({"arch": "vgg16", "layer": "conv6_1", "weights": "random"}, "layer", "unknown layer 'conv6_1'"),
    ({"arch": "resnet18", "layer": "layer1"}, "weights", "required"),
    ({"arch": "resnet18", "layer": "layer1", "weights": "random", "batchnorm": "eval"}, "batchnorm", "unknown type"),
    ({"arch": "resnet18", "layer": "layer1", "weights": "random", "input_norm": "none"}, "input_norm", "needs 3"),
])
def test_errors_name_the_key(params, key, msg):
    cfg = {"initial_input_channels": 1, "adapter": {"type": "none"}, "frontend": {"type": "none"},
           "convnet": {"type": "backbone", "params": params}}
    with pytest.raises(ModelConfigError, match=f"model.convnet.params.{key}: .*{msg}"):
        build_model(cfg, [4], input_shape=(1, 1, 32, 32))


def test_the_trace_lists_the_kept_layers():
    cfg = {"initial_input_channels": 3, "adapter": {"type": "none"}, "frontend": {"type": "none"},
           "convnet": {"type": "backbone", "params": {"arch": "resnet50", "layer": "layer3", "weights": "random"}},
           "readout": {"type": "gaussian", "params": {}}}
    m = build_model(cfg, [4], input_shape=(3, 1, 112, 112))
    rows = {s.module: s for s in trace_shapes(m, (3, 1, 112, 112))}
    assert rows["convnet.body.layer3"].out_shape == (1, 1024, 7, 7)
    assert rows["convnet.body.layer3"].key == "model.convnet.params.layer" and "convnet.body.layer4" not in rows
    assert rows["readouts.0"].in_shape == (1, 1024, 1, 7, 7)
    assert set(VGGS) | set(RESNETS) == set(TORCHVISION)
