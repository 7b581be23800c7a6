"""``convnet.type: backbone``: a torchvision ImageNet architecture, truncated at a chosen layer, as the shared core.

The architectures are written here with torchvision's exact module and parameter names (torchvision is not a
dependency), so a torchvision ``state_dict`` file loads unchanged into ``convnet.body``. Weights come only from a
local file the user names; nothing is ever downloaded. To get ImageNet weights, on any machine with internet::

    import torch, torchvision
    sd = torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict()
    torch.save(sd, "resnet50_imagenet1k_v2.pth")         # or safetensors.torch.save_file(sd, "....safetensors")

then ``convnet.params.weights: /path/to/resnet50_imagenet1k_v2.pth``.

Architectures (``arch``; torchvision builders of the same name):

* ResNet: ``resnet18``, ``resnet34`` (BasicBlock), ``resnet50``, ``resnet101``, ``resnet152`` (Bottleneck, stride on
  the 3 x 3 conv: torchvision's "v1.5"), ``wide_resnet50_2``, ``wide_resnet101_2``, ``resnext50_32x4d``,
  ``resnext101_32x8d``. Names ``conv1``, ``bn1``, ``layer{1..4}.{b}.conv1/bn1/conv2/bn2[/conv3/bn3]``,
  ``layer{n}.0.downsample.0`` (1x1 conv) / ``.1`` (BatchNorm).
* VGG: ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` and their ``_bn`` variants. Names ``features.{i}``.

``convnet.params``:

====================  ===========  ===================================================================================
key                   default      meaning
====================  ===========  ===================================================================================
``arch``              required     one of the architectures above
``layer``             required     the last layer kept. ResNet: ``conv1``, ``bn1``, ``relu``, ``maxpool``,
                                   ``layer1`` .. ``layer4``, or ``layer3.1`` (blocks 0..1 of layer3). VGG:
                                   ``features.<i>`` or ``conv<s>_<k>``, ``relu<s>_<k>``, ``pool<s>`` (e.g. ``conv4_3``;
                                   with ``_bn`` also ``bn<s>_<k>``)
``weights``           required     a torchvision state_dict file (``.pth``/``.pt``, read with ``weights_only=True``,
                                   or ``.safetensors``), or ``random`` for torchvision's random initialisation.
                                   Keys of later layers (``fc``, ``classifier``, ...) are ignored; every kept key
                                   must be there with its shape. A relative path resolves against the working folder.
``frozen``            true         ``true``: no gradients, the body always in eval mode (batch-norm statistics fixed);
                                   ``false``: fine-tuned; or a list of parameter-name prefixes to freeze (e.g.
                                   ``[conv1, bn1, layer1]``)
``batchnorm``         ``frozen``   ``frozen``: batch-norm layers always use their stored statistics (eval mode) while
                                   their gains still train when not frozen; ``train``: they update their statistics
``input_norm``        ``imagenet``  ``imagenet``: the stimulus (neurotrain's ``(x - 127) / 255``) is mapped back to
                                   [0, 1] and normalised with the ImageNet mean/std per RGB channel (a grey stimulus
                                   is replicated into 3 channels first); ``none``: fed as it is (3 channels needed)
====================  ===========  ===================================================================================

Input ``(B, C, T, H, W)`` with C = 1 (grey) or 3 (RGB); every time step is one image (frame by frame). Output
``(B, C', T, H', W')``; e.g. ``resnet50`` to ``layer3``: C' = 1024, H' = H / 16.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .layers2d import fold_time, unfold_time

KEYS = ("arch", "layer", "weights", "frozen", "batchnorm", "input_norm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# ResNet (torchvision.models.resnet, same names)
# ----------------------------------------------------------------------------------------------


def _conv3x3(c_in, c_out, stride=1, groups=1):
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNETS = {  # name -> (block, layers, groups, width_per_group)
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 1, 64),
    "wide_resnet50_2": (Bottleneck, (3, 4, 6, 3), 1, 128),
    "wide_resnet101_2": (Bottleneck, (3, 4, 23, 3), 1, 128),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
}
RESNET_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNetBody(nn.Module):
    """torchvision's ResNet up to ``last`` (a name of :data:`RESNET_LAYERS`), ``blocks`` blocks of the last
    ``layer{n}`` (all when None). Weights initialised as torchvision does (Kaiming normal convs, BN 1/0)."""

    def __init__(self, arch: str, last: str, blocks: int | None = None):
        super().__init__()
        block, layers, groups, width = RESNETS[arch]
        self.inplanes, self.groups, self.base_width = 64, groups, width
        self.order: list[str] = []
        keep = RESNET_LAYERS[: RESNET_LAYERS.index(last) + 1]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.order = [n for n in ("conv1", "bn1", "relu", "maxpool") if n in keep]
        self.out_channels = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            name = f"layer{i}"
            if name not in keep:
                break
            count = n if (name != last or blocks is None) else blocks
            setattr(self, name, self._make_layer(block, planes, n, stride=1 if i == 1 else 2, keep=count))
            self.order.append(name)
            self.out_channels = planes * block.expansion
        for name in ("conv1", "bn1", "relu", "maxpool"):
            if name not in self.order:
                delattr(self, name)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride, keep):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width))
        return nn.Sequential(*layers[:keep])

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.order]

    def forward(self, x):
        for _, m in self.stages():
            x = m(x)
        return x


# ----------------------------------------------------------------------------------------------
# VGG (torchvision.models.vgg, same names)
# ----------------------------------------------------------------------------------------------

VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
VGGS = tuple(VGG_CFGS) + tuple(f"{n}_bn" for n in VGG_CFGS)


def vgg_layer_names(arch: str) -> list[str]:
    """The names of ``features.{i}`` in order: ``conv1_1``, [``bn1_1``,] ``relu1_1``, ..., ``pool1``, ..."""
    bn = arch.endswith("_bn")
    names, s, k = [], 1, 1
    for v in VGG_CFGS[arch.removesuffix("_bn")]:
        if v == "M":
            names.append(f"pool{s}")
            s, k = s + 1, 1
        else:
            names += [f"conv{s}_{k}"] + ([f"bn{s}_{k}"] if bn else []) + [f"relu{s}_{k}"]
            k += 1
    return names


class VGGBody(nn.Module):
    """torchvision's VGG ``features`` up to index ``last`` (inclusive). Weights initialised as torchvision does."""

    def __init__(self, arch: str, last: int):
        super().__init__()
        bn = arch.endswith("_bn")
        layers: list[nn.Module] = []
        c = 3
        self.out_channels = 3
        for v in VGG_CFGS[arch.removesuffix("_bn")]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
                if bn:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                c = v
        kept = layers[: last + 1]
        for m in kept:
            if isinstance(m, nn.Conv2d):
                self.out_channels = m.out_channels
        self.features = nn.Sequential(*kept)
        self.names = vgg_layer_names(arch)[: last + 1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

        # one stage per pooling block (features.a-b), run by forward so that the shape trace sees them
        self._stages, start = [], 0
        for i, name in enumerate(self.names):
            if name.startswith("pool") or i == len(self.names) - 1:
                self._stages.append((f"features.{start}-{i}", _Slice(self.features, start, i + 1)))
                start = i + 1

    def stages(self) -> list[tuple[str, nn.Module]]:
        return list(self._stages)

    def forward(self, x):
        for _, m in self._stages:
            x = m(x)
        return x


class _Slice(nn.Module):
    """Runs ``features[a:b]`` (no parameters of its own; only for the shape trace)."""

    def __init__(self, seq: nn.Sequential, a: int, b: int):
        super().__init__()
        self._seq = [seq]  # not a submodule: the parameters stay at features.{i}
        self.a, self.b = a, b

    def parameters(self, recurse: bool = True):  # noqa: ARG002 - the slice's layers' parameters (for the trace)
        seq = self._seq[0]
        for i in range(self.a, self.b):
            yield from seq[i].parameters()

    def forward(self, x):
        seq = self._seq[0]
        for i in range(self.a, self.b):
            x = seq[i](x)
        return x


# ----------------------------------------------------------------------------------------------
# the core
# ----------------------------------------------------------------------------------------------

ARCHS = tuple(RESNETS) + VGGS


def _parse_layer(arch: str, layer, path: str):
    """ResNet: ``(last name, blocks or None)``; VGG: the index of the last kept ``features`` entry."""
    key = f"{path}.layer"
    if not isinstance(layer, str) or not layer:
        raise ModelConfigError(key, f"required: the last layer kept, e.g. 'layer3' (ResNet) or 'conv4_3' (VGG), "
                                    f"got {layer!r}")
    if arch in RESNETS:
        m = re.fullmatch(r"(layer[1-4])\.(\d+)", layer)
        if m:
            n = RESNETS[arch][1][int(m.group(1)[-1]) - 1]
            b = int(m.group(2))
            if b >= n:
                raise ModelConfigError(key, f"{m.group(1)} of {arch} has blocks 0..{n - 1}, got {layer!r}")
            return m.group(1), b + 1
        if layer not in RESNET_LAYERS:
            raise ModelConfigError(key, f"expected one of {list(RESNET_LAYERS)} or 'layer<n>.<block>' for {arch}, "
                                        f"got {layer!r}")
        return layer, None
    names = vgg_layer_names(arch)
    m = re.fullmatch(r"features\.(\d+)", layer)
    if m:
        i = int(m.group(1))
        if i >= len(names):
            raise ModelConfigError(key, f"{arch} has features.0 .. features.{len(names) - 1}, got {layer!r}")
        return i
    if layer not in names:
        raise ModelConfigError(key, f"unknown layer {layer!r} of {arch}; expected features.<i> or one of "
                                    f"{', '.join(names)}")
    return names.index(layer)


def read_state_dict(file: str | os.PathLike, key: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt`` file read with ``weights_only=True`` (a
    plain state_dict, or one under ``state_dict`` / ``model``); errors name ``key`` and the file."""
    p = Path(file).expanduser()
    if not p.is_file():
        raise ModelConfigError(key, f"weights file {str(p)!r} does not exist (torchvision weights are never "
                                    "downloaded at run time: save them to a file first, see neurotrain.model.backbone)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported with its key
        raise ModelConfigError(key, f"cannot read weights file {str(p)!r}: {type(err).__name__}: {err}") from None
    if isinstance(sd, dict) and len(sd) == 1 and next(iter(sd)) in ("state_dict", "model"):
        sd = next(iter(sd.values()))
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelConfigError(key, f"weights file {str(p)!r} does not hold a state_dict (a mapping of names to "
                                    "tensors)")
    return sd


def load_body_weights(body: nn.Module, sd: dict[str, torch.Tensor], key: str, file: str) -> int:
    """Copy the body's tensors from ``sd`` (torchvision names; keys of layers the body lacks are ignored).
    Returns the number of ignored keys. A missing kept key or a shape mismatch raises, naming ``key``."""
    mine = body.state_dict()
    for name, t in mine.items():
        if name not in sd:
            raise ModelConfigError(key, f"weights file {file!r} has no {name!r} (is it a state_dict of the same "
                                        "architecture?)")
        if tuple(sd[name].shape) != tuple(t.shape):
            raise ModelConfigError(key, f"weights file {file!r}: {name!r} has shape {tuple(sd[name].shape)}, the "
                                        f"architecture needs {tuple(t.shape)}")
    body.load_state_dict({k: sd[k] for k in mine}, strict=True)
    return sum(1 for k in sd if k not in mine)


class BackboneCore(nn.Module):
    """See the module docstring. ``body`` holds torchvision's modules under torchvision's names; ``mean``/``std``
    are non-persistent buffers (the ImageNet statistics); ``weights_report`` says what was loaded."""

    def __init__(self, initial_channels: int, path: str = "model.convnet.params", **params):
        super().__init__()
        p = check_keys(params, KEYS, path)
        self.path = path
        arch = p.get("arch")
        if arch not in ARCHS:
            raise unknown_type(f"{path}.arch", arch, ARCHS)
        self.arch = arch
        if "weights" not in p or p["weights"] is None:
            raise ModelConfigError(f"{path}.weights", "required: a torchvision state_dict file (.pth or "
                                   ".safetensors), or 'random' for an untrained network")
        last = _parse_layer(arch, p.get("layer"), path)
        self.body = ResNetBody(arch, *last) if arch in RESNETS else VGGBody(arch, last)
        self.layer = p["layer"]
        weights = str(p["weights"])
        if weights == "random":
            self.weights_report = f"{arch} to {self.layer}: random initialisation"
        else:
            sd = read_state_dict(weights, f"{path}.weights")
            ignored = load_body_weights(self.body, sd, f"{path}.weights", weights)
            self.weights_report = (f"{arch} to {self.layer}: {len(self.body.state_dict())} tensors from {weights} "
                                   f"({ignored} of later layers ignored)")
        c = int(initial_channels)
        norm = str(p.get("input_norm", "imagenet")).lower()
        if norm not in ("imagenet", "none"):
            raise unknown_type(f"{path}.input_norm", p.get("input_norm"), ("imagenet", "none"))
        if norm == "imagenet" and c not in (1, 3):
            raise ModelConfigError(f"{path}.input_norm", f"'imagenet' needs a grey (1) or RGB (3) stimulus; the core "
                                   f"receives {c} channels")
        if norm == "none" and c != 3:
            raise ModelConfigError(f"{path}.input_norm", f"'none' feeds the stimulus as it is, which needs 3 "
                                   f"channels; the core receives {c} (use 'imagenet' to replicate grey into RGB)")
        self.input_norm, self.in_channels = norm, c
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        bn = str(p.get("batchnorm", "frozen")).lower()
        if bn not in ("frozen", "train"):
            raise unknown_type(f"{path}.batchnorm", p.get("batchnorm"), ("frozen", "train"))
        self.bn_frozen = bn == "frozen"
        self.frozen_prefixes = self._freeze(p.get("frozen", True), f"{path}.frozen")

    def _freeze(self, frozen, key: str) -> tuple[str, ...]:
        names = [n for n, _ in self.body.named_parameters()]
        if frozen is True:
            prefixes = ("",)
        elif frozen is False or frozen is None:
            prefixes = ()
        elif isinstance(frozen, list) and all(isinstance(f, str) and f for f in frozen):
            for f in frozen:
                if not any(n == f or n.startswith(f + ".") for n in names):
                    raise ModelConfigError(key, f"{f!r} is no module of the {self.arch} body (kept: "
                                                f"{', '.join(sorted({n.split('.')[0] for n in names}))})")
            prefixes = tuple(frozen)
        else:
            raise ModelConfigError(key, f"expected true, false or a list of parameter-name prefixes, got {frozen!r}")
        for n, prm in self.body.named_parameters():
            if any(f == "" or n == f or n.startswith(f + ".") for f in prefixes):
                prm.requires_grad_(False)
        return prefixes

    def _is_frozen_module(self, name: str) -> bool:
        return any(f == "" or name == f or name.startswith(f + ".") for f in self.frozen_prefixes)

    def train(self, mode: bool = True):
        """Frozen parts of the body (and, with ``batchnorm: frozen``, every batch norm) stay in eval mode."""
        super().train(mode)
        if mode:
            for name, m in self.body.named_modules():
                if (name and self._is_frozen_module(name)) or (self.bn_frozen and isinstance(m, nn.BatchNorm2d)):
                    m.eval()
            if self.frozen_prefixes == ("",):
                self.body.eval()
        return self

    @property
    def output_channels(self) -> int:
        return int(self.body.out_channels)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` neurotrain stimulus -> the body's input (module docstring)."""
        if self.input_norm == "none":
            return x
        x = x + 127.0 / 255.0  # back to [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def shape_stages(self) -> list[tuple[str, nn.Module, str]]:
        return [(f"body.{n}", m, f"{self.path}.layer") for n, m in self.body.stages()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, t = fold_time(x)
        return unfold_time(self.body(self.normalize(x)), t)
