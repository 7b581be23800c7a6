"""Convolutional cores: ResNet, DenseNet and a vanilla stack, on ``(B, C, T, H, W)`` tensors.

Config (the YAML ``convnet.params`` plus ``initial_channels``): ``channels`` (per-block output or
growth, required), ``block_configs`` (ConvBlock mappings, same length, required), optional
``stem_config`` (a ConvBlock mapping plus required ``out_channels``), ``final_activation`` (default
none), ``resnet_post_add_activation`` (default none), ``shortcut_crop`` (ResNet: ``shortcut`` or
``both``, see :class:`ResBlock`; neurotrain's addition), and the ResNet projection-shortcut options
of VisionCore before 5e693f2 (see :class:`ResBlock`): ``resnet_shortcut_projection`` (true),
``resnet_shortcut_params`` (``{kernel_size: 1, bias: false}``), ``resnet_shortcut_norm_type`` (none)
and ``resnet_shortcut_norm_params``. ``checkpointing``, ``dim`` and
``base_channels`` are accepted and ignored (legacy read none of them for the maths); any other key
is a :class:`ModelConfigError`. In ResNet and DenseNet block configs ``out_channels`` and
``channel_multiplier`` are ignored (legacy dropped them); the vanilla stack accepts neither.

State-dict layout: ``layers.{i}...`` then ``stem...`` (``layers`` is created before the stem), then
``final_activation...`` (only if it has parameters). Time crops keep the LAST entries along T (the
oldest lags); space is centre-cropped.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .activations import get_activation_layer, output_channels_of
from .blocks import ConvBlock
from .conv import check_keys
from .errors import ModelConfigError
from .norms import get_norm_layer
from .pooling import legacy_pool_stride, pool_type_of

SHORTCUT_KEYS = ("resnet_shortcut_projection", "resnet_shortcut_params", "resnet_shortcut_norm_type",
                 "resnet_shortcut_norm_params")
CONVNET_KEYS = ("channels", "block_configs", "stem_config", "final_activation",
                "resnet_post_add_activation", "shortcut_crop") + SHORTCUT_KEYS
SHORTCUT_CROPS = ("shortcut", "both")
CONVNET_IGNORED = ("checkpointing", "dim", "base_channels")


def crop_to(x: torch.Tensor, ref_shape, path: str = "convnet") -> torch.Tensor:
    """Crop 5-D ``x`` to ``ref_shape[2:]``: keep the last T entries, centre-crop H and W
    (start = diff // 2). Raises :class:`ModelConfigError` if ``x`` is smaller than the reference."""
    t, h, w = ref_shape[-3:]
    T, H, W = x.shape[-3:]
    if T < t or H < h or W < w:
        raise ModelConfigError(f"{path}", f"cannot crop (T, H, W) = {(T, H, W)} up to {(t, h, w)}; "
                               f"crops never pad")
    hs, ws = (H - h) // 2, (W - w) // 2
    return x[..., T - t:, hs:hs + h, ws:ws + w]


def legacy_shortcut_stride(conv_stride, pool_stride, path: str) -> tuple[int, int, int]:
    """Stride of a ResNet projection shortcut: conv stride x pool stride, combined as legacy did.

    Two ints multiply and apply to T, H and W alike (so an ``aablur`` pool stride of 2 also strides
    the shortcut in T). A 3-value list is used as is when the other factor is 1. Legacy multiplied
    the raw YAML values, so a list with any other factor produced a repeated list and no working
    model; that raises here.
    """
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(conv_stride) and is_int(pool_stride):
        return (conv_stride * pool_stride,) * 3
    if isinstance(conv_stride, (list, tuple)) and pool_stride == 1:
        seq = conv_stride
    elif conv_stride == 1 and isinstance(pool_stride, (list, tuple)):
        seq = pool_stride
    else:
        raise ModelConfigError(
            f"{path}", f"conv_params.stride {conv_stride!r} with pool_params.stride {pool_stride!r}: "
            f"legacy multiplied these raw values for the shortcut stride and could not build this "
            f"ResNet block; give both as ints or make one of them 1")
    if len(seq) != 3:
        raise ModelConfigError(f"{path}", f"shortcut stride {list(seq)!r} needs 3 values [T, H, W]")
    return tuple(int(v) for v in seq)  # type: ignore[return-value]


class ResBlock(nn.Module):
    """``out = post_add_activation(main_block(x) + crop(shortcut(x)))``.

    ``shortcut`` is a bias-free 1x1x1 Conv3d with the legacy stride (:func:`legacy_shortcut_stride`
    of ``conv_params.stride`` and ``pool_params.stride``), present when channels change or that
    stride > 1 (else Identity).

    ``shortcut_options`` (the ``resnet_shortcut_*`` convnet params, read by VisionCore before 5e693f2):
    ``resnet_shortcut_projection: false`` keeps the Identity (legal only when the channels do not
    change); ``resnet_shortcut_params`` ``{kernel_size, bias}`` make the projection a k x k x k conv
    (no padding) with a bias (key ``shortcut.bias``); ``resnet_shortcut_norm_type`` /
    ``resnet_shortcut_norm_params`` add a norm after it (``shortcut_norm.*``; legacy
    ``shortcut.1.*``).

    ``shortcut_crop`` (the convnet param; an addition of neurotrain's, for checkpoints of two eras):

    * ``shortcut`` (default; the legacy rule since Oct 20, 2025): the shortcut output is cropped to
      the main output (last T entries, centre H/W); if it is smaller on any axis a
      :class:`ModelConfigError` names the block, both shapes and the cause.
    * ``both`` (the rule of the legacy code before then, under which the refactor-era PC/STN models
      were trained): both outputs are cropped to their common size on every axis. Whenever the
      default rule runs, both rules give the same numbers.

    Input ``(B, C_in, T, H, W)``, output ``(B, C_out, T', H', W')``.
    """

    def __init__(self, in_channels: int, block_cfg: dict, out_channels: int,
                 post_add_activation: str | None = None, path: str = "block",
                 shortcut_crop: str = "shortcut", shortcut_options: dict | None = None):
        super().__init__()
        self.path = path
        self.shortcut_crop = shortcut_crop
        self.main_block = ConvBlock.from_config(in_channels, out_channels, block_cfg, path,
                                                ignored=("out_channels", "channel_multiplier"))
        c_out = self.main_block.output_channels
        cfg = block_cfg or {}
        conv_stride = (cfg.get("conv_params") or {}).get("stride", 1)
        pool_params = cfg.get("pool_params")
        self.pool_type = pool_type_of(pool_params)
        pool_stride = legacy_pool_stride(pool_params, f"{path}.pool_params")
        stride = legacy_shortcut_stride(conv_stride, pool_stride, path)
        self.conv_stride, self.pool_stride = conv_stride, pool_stride
        root = path.split(".block_configs")[0]
        opts = shortcut_options or {}
        sc = check_keys(opts.get("resnet_shortcut_params"), ("kernel_size", "bias"),
                        f"{root}.resnet_shortcut_params")
        self.shortcut_norm = None
        if in_channels != c_out or any(s > 1 for s in stride):
            if opts.get("resnet_shortcut_projection", True) is False:
                if in_channels != c_out:
                    raise ModelConfigError(f"{root}.resnet_shortcut_projection", f"false, but {path} changes the "
                                           f"channels ({in_channels} -> {c_out}): an identity shortcut cannot be "
                                           "added to the main path (legacy failed at the first forward)")
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Conv3d(in_channels, c_out, sc.get("kernel_size", 1), stride=stride,
                                          bias=bool(sc.get("bias", False)))
                norm_type = opts.get("resnet_shortcut_norm_type")
                if norm_type is not None and str(norm_type).lower() != "none":
                    self.shortcut_norm = get_norm_layer(norm_type, c_out, 3, opts.get("resnet_shortcut_norm_params"),
                                                        path=f"{root}.resnet_shortcut_norm_type",
                                                        params_path=f"{root}.resnet_shortcut_norm_params")
        else:
            self.shortcut = nn.Identity()
        self.shortcut_stride = stride
        self.post_add_activation = get_activation_layer(
            post_add_activation or "none", path=f"{root}.resnet_post_add_activation")
        self._output_channels = output_channels_of(self.post_add_activation, c_out)

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def _mismatch(self, y_shape, s_shape) -> ModelConfigError:
        main, short = tuple(y_shape[2:]), tuple(s_shape[2:])
        causes = []
        if short[0] < main[0]:
            causes.append(
                f"T: the shortcut strides T by {self.shortcut_stride[0]} (conv stride "
                f"{self.conv_stride!r} x pool stride {self.pool_stride!r}, applied to T as well, as "
                f"legacy did) but the main path keeps {main[0]} steps"
                + (f" ('{self.pool_type}' pooling does not pool T)"
                   if self.pool_type in ("aablur", "se_pool") else ""))
        k = self.main_block.kernel_size
        spatial: dict[str, list[str]] = {}
        for ax, name in ((1, "H"), (2, "W")):
            if short[ax] < main[ax]:
                pad = self.main_block.hw_padding[ax - 1]
                same = (k[ax] - 1) // 2
                why = (f"main {main[ax]} > shortcut {short[ax]} (shortcut stride "
                       f"{self.shortcut_stride[ax]})")
                if pad > same:
                    why += (f"; conv padding {pad} exceeds (kernel {k[ax]} - 1) // 2 = {same}, so "
                            f"the main path outgrows the strided shortcut")
                spatial.setdefault(why, []).append(name)
        causes += [f"{'/'.join(names)}: {why}" for why, names in spatial.items()]
        return ModelConfigError(
            f"{self.path}", f"ResNet shortcut output (T, H, W) = {short} is smaller than the main block "
            f"output {main}; the shortcut is only ever cropped, never padded (legacy raised 'Target "
            f"shape ... is larger than tensor shape ...' here). Cause: " + "; ".join(causes)
            + ". Fix the block's padding/strides, or set convnet.params.shortcut_crop: both (crop both "
              "paths to their common size, the legacy rule before Oct 20, 2025)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main_block(x)
        s = self.shortcut(x)
        if self.shortcut_norm is not None:
            s = self.shortcut_norm(s)
        if s.shape[2:] != y.shape[2:]:
            if self.shortcut_crop == "both":
                common = tuple(y.shape[:2]) + tuple(min(a, b) for a, b in zip(s.shape[2:], y.shape[2:]))
                y = crop_to(y, common, self.path)
            elif any(a < b for a, b in zip(s.shape[2:], y.shape[2:])):
                raise self._mismatch(y.shape, s.shape)
            s = crop_to(s, y.shape, self.path)
        return self.post_add_activation(y + s)


class _ConvNetBase(nn.Module):
    """Shared construction: ``layers`` (ModuleList, created first), optional ``stem``, then
    ``final_activation``. Subclasses implement ``_make_layer`` and ``_run_layers``."""

    block_ignored: tuple[str, ...] = ("out_channels", "channel_multiplier")

    def __init__(self, initial_channels: int, path: str = "model.convnet.params", **params):
        super().__init__()
        p = check_keys(params, CONVNET_KEYS, path, CONVNET_IGNORED)
        for key in ("channels", "block_configs"):
            if p.get(key) is None:
                raise ModelConfigError(f"{path}.{key}", f"required (a list, one entry per block)")
        channels = list(p["channels"])
        block_configs = list(p["block_configs"])
        if len(channels) != len(block_configs):
            raise ModelConfigError(f"{path}", f"'channels' ({len(channels)}) and 'block_configs' "
                                   f"({len(block_configs)}) must have the same length")
        self.layers = nn.ModuleList()
        stem_cfg = p.get("stem_config")
        c = initial_channels
        stem = None
        if stem_cfg is not None:
            if not isinstance(stem_cfg, dict):
                raise ModelConfigError(f"{path}.stem_config", f"expected a mapping")
            stem_cfg = dict(stem_cfg)
            if "out_channels" not in stem_cfg:
                raise ModelConfigError(f"{path}.stem_config.out_channels", f"required")
            stem_out = stem_cfg.pop("out_channels")
            stem = ConvBlock.from_config(c, stem_out, stem_cfg, f"{path}.stem_config")
            c = stem.output_channels
        self._post_add = p.get("resnet_post_add_activation")
        self._shortcut_options = {k: p[k] for k in SHORTCUT_KEYS if k in p}
        self._shortcut_crop = p.get("shortcut_crop", "shortcut")
        if self._shortcut_crop not in SHORTCUT_CROPS:
            raise ModelConfigError(f"{path}.shortcut_crop", f"expected one of {list(SHORTCUT_CROPS)}, "
                                   f"got {self._shortcut_crop!r}")
        for i, (ch, cfg) in enumerate(zip(channels, block_configs)):
            layer, c = self._make_layer(c, ch, cfg, f"{path}.block_configs[{i}]")
            self.layers.append(layer)
        self.stem = stem
        self.final_activation = get_activation_layer(p.get("final_activation") or "none",
                                                     path=f"{path}.final_activation")
        self._output_channels = output_channels_of(self.final_activation, c)

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def _make_layer(self, c_in, ch, cfg, path):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run_layers(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        return self.final_activation(self._run_layers(x))


class ResNet(_ConvNetBase):
    """Stem then ResBlocks. Keys ``layers.{i}.main_block.components.*``, ``layers.{i}.shortcut.weight``,
    ``stem.components.*``. Input ``(B, C0, T, H, W)``; output ``(B, output_channels, T', H', W')``."""

    def _make_layer(self, c_in, ch, cfg, path):
        blk = ResBlock(c_in, cfg, ch, self._post_add, path=path, shortcut_crop=self._shortcut_crop,
                       shortcut_options=self._shortcut_options)
        return blk, blk.output_channels

    def _run_layers(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class DenseNet(_ConvNetBase):
    """Stem then dense blocks: ``out = block(x_cat)``; ``x_cat = cat([crop(x_cat), out], 1)``.
    Output channels = stem out + sum of block outputs. Keys ``layers.{i}.components.*``."""

    def _make_layer(self, c_in, ch, cfg, path):
        blk = ConvBlock.from_config(c_in, ch, cfg, path, ignored=self.block_ignored)
        blk.path = path
        return blk, c_in + blk.output_channels

    def _run_layers(self, x):
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([crop_to(x, out.shape, layer.path), out], dim=1)
        return x


class VanillaCNN(_ConvNetBase):
    """A plain sequence of ConvBlocks. Keys ``layers.{i}.components.*``. Block configs may not carry
    ``out_channels`` or ``channel_multiplier`` (legacy failed on them)."""

    def _make_layer(self, c_in, ch, cfg, path):
        blk = ConvBlock.from_config(c_in, ch, cfg, path)
        return blk, blk.output_channels

    def _run_layers(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class IdentityConvNet(nn.Identity):
    """``convnet: none``: passes ``(B, C, T, H, W)`` through; no state_dict keys."""

    def __init__(self, initial_channels: int):
        super().__init__()
        self.output_channels = initial_channels


from .shifttcn import ShiftTCN  # noqa: E402 - refactor-era backbones (model/shifttcn.py, model/x3d.py)
from .x3d import X3DNet  # noqa: E402
from .backbone import BackboneCore  # noqa: E402 - neurotrain's 2-D cores (deepresnet.py, convnext.py, backbone.py)
from .convnext import ConvNeXt  # noqa: E402
from .deepresnet import DeepResNet  # noqa: E402

CONVNET_TYPES = {"resnet": ResNet, "densenet": DenseNet, "vanilla": VanillaCNN, "cnn": VanillaCNN,
                 "conv": VanillaCNN, "x3d": X3DNet, "x3dnet": X3DNet, "shifttcn": ShiftTCN,
                 "deepresnet": DeepResNet, "convnext": ConvNeXt, "backbone": BackboneCore}
