"""ConvBlock: pad -> conv -> norm -> act -> dropout -> pool on 5-D tensors ``(B, C, T, H, W)``.

Components live in ``self.components`` (an ``nn.ModuleDict`` with keys among
``conv``, ``norm``, ``act``, ``dropout``, ``pool``), so parameters are at
``components.conv.conv.<...>``, ``components.norm.gamma`` etc., as in legacy checkpoints.

YAML keys of a block (anything else is a :class:`ModelConfigError`): ``conv_params`` (required, with
``kernel_size``), ``norm_type`` (default ``batch``), ``norm_params``, ``act_type`` (default ``relu``),
``act_params``, ``pool_params``, ``dropout`` (0), ``causal`` (True), ``order``
(default ``[pad, conv, norm, act, dropout, pool]``), ``dim`` (see below). The conv bias defaults to
True only when ``norm_type`` is ``none``/null.

Padding rules (legacy-exact), with "3-D" meaning temporal kernel > 1:

* 3-D and ``causal``: replicate-pad W ``(p_w, p_w)`` and H ``(p_h, p_h)`` from ``conv_params.padding``
  (int, ``[H, W]`` or ``[T, H, W]`` with T ignored) and T ``(dilation_T * (k_T - 1), 0)`` (on the
  index-0 = newest-lag side); an axis with kernel 1 gets none; the conv itself is unpadded. The pad
  is only applied if ``pad`` is in ``order``.
* otherwise, with ``pad`` in ``order``: no padding at all (valid conv), whatever ``padding`` says.
* otherwise: the conv's own padding ``conv_params.padding`` (int or ``[T, H, W]``) with its
  ``padding_mode`` (default replicate).

``dim: 3`` (the ConvBlock argument of VisionCore before e353351, which the convnet filled in from its
own ``dim``): the block is "3-D" whatever its temporal kernel (so a ``[1, k, k]`` block is causal-padded
and may pool with ``aablur``), and the causal pad takes H/W padding from ``conv_params.padding`` on
every axis, kernel 1 or not (the padding rule of VisionCore before 213b70b). Only 3 is accepted.
"""

from __future__ import annotations

import difflib
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import get_activation_layer, output_channels_of
from .conv import CONV_KEYS, CONV_TYPES, _triple, check_keys
from .errors import ModelConfigError, unknown_type
from .norms import get_norm_layer
from .pooling import get_pooling_layer

DEFAULT_ORDER = ("pad", "conv", "norm", "act", "dropout", "pool")
ORDER_NAMES = DEFAULT_ORDER
BLOCK_KEYS = ("conv_params", "norm_type", "norm_params", "act_type", "act_params", "pool_params",
              "dropout", "causal", "order", "dim")


def causal_pad_spec(kernel: tuple[int, int, int], dilation, padding,
                    path: str = "conv_params", pad_unit_axes: bool = False) -> tuple[int, ...]:
    """``F.pad`` spec ``(W_l, W_r, H_l, H_r, T_l, T_r)`` of a causal 3-D block.

    T: ``(dilation_T * (k_T - 1), 0)``; H/W: symmetric from ``padding`` (int, ``[H, W]`` or
    ``[T, H, W]``); any axis whose kernel is 1 gets 0, unless ``pad_unit_axes`` (H/W then padded
    whatever the kernel: VisionCore before 213b70b).
    """
    dil = _triple(dilation, f"{path}.dilation")
    if padding is None:
        cfg = (0, 0, 0)
    elif isinstance(padding, (list, tuple)):
        if len(padding) == 3:
            cfg = tuple(int(v) for v in padding)
        elif len(padding) == 2:
            cfg = (0, int(padding[0]), int(padding[1]))
        else:
            raise ModelConfigError(f"{path}.padding", f"expected an int, [H, W] or [T, H, W], "
                                   f"got {padding!r}")
    elif isinstance(padding, int) and not isinstance(padding, bool):
        cfg = (padding,) * 3
    else:
        raise ModelConfigError(f"{path}.padding", f"expected an int, [H, W] or [T, H, W], "
                               f"got {padding!r}")
    pt = dil[0] * (kernel[0] - 1) if kernel[0] > 1 else 0
    ph = cfg[1] if kernel[1] > 1 or pad_unit_axes else 0
    pw = cfg[2] if kernel[2] > 1 or pad_unit_axes else 0
    return (pw, pw, ph, ph, pt, 0)


class ConvBlock(nn.Module):
    """One conv block. Input ``(B, in_channels, T, H, W)``; output
    ``(B, output_channels, T', H', W')`` where ``output_channels`` = ``out_channels`` (x2 for
    SplitReLU). Build from a YAML mapping with :meth:`from_config` (strict keys)."""

    def __init__(self, in_channels: int, out_channels: int, conv_params: dict | None = None,
                 norm_type: str | None = "batch", norm_params: dict | None = None,
                 act_type: str | None = "relu", act_params: dict | None = None,
                 pool_params: dict | str | None = None, dropout: float = 0.0,
                 causal: bool = True, order: Sequence[str] | None = None, dim: int | None = None,
                 path: str = "block"):
        super().__init__()
        if not isinstance(conv_params, dict):
            raise ModelConfigError(f"{path}.conv_params", f"required (a mapping with kernel_size)")
        cpath = f"{path}.conv_params"
        conv_type = str(conv_params.get("type", "standard")).lower()
        if conv_type not in CONV_TYPES:
            raise unknown_type(f"{cpath}.type", conv_params.get("type"), CONV_TYPES)
        cp = check_keys(conv_params, ("type",) + CONV_KEYS[conv_type], cpath)
        cp.pop("type", None)
        if "kernel_size" not in cp:
            raise ModelConfigError(f"{cpath}.kernel_size", f"required")
        kernel = _triple(cp.pop("kernel_size"), f"{cpath}.kernel_size")
        padding = cp.pop("padding", 0)
        dilation = cp.get("dilation", 1)
        self.order = tuple(order) if order is not None else DEFAULT_ORDER
        for name in self.order:
            if name not in ORDER_NAMES:
                close = difflib.get_close_matches(str(name), ORDER_NAMES, n=1)
                raise ModelConfigError(
                    f"{path}.order", f"unknown step {name!r} (expected some of "
                    f"{', '.join(ORDER_NAMES)})" + (f" (did you mean {close[0]!r}?)" if close else ""))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.causal = bool(causal)
        if dim is not None and (isinstance(dim, bool) or dim != 3):
            raise ModelConfigError(f"{path}.dim", f"only 3 is accepted (the refactor-era 3-D block; other "
                                   f"values never ran on (B, C, T, H, W) input), got {dim!r}")
        self.legacy_dim = dim is not None
        self.dim = 3 if kernel[0] > 1 or self.legacy_dim else 2
        cp.setdefault("bias", norm_type in (None, "none"))

        self.kernel_size = kernel
        self.pad_spec: tuple[int, ...] | None = None
        if self.causal and self.dim == 3:
            spec = causal_pad_spec(kernel, dilation, padding, cpath, pad_unit_axes=self.legacy_dim)
            self.pad_spec = spec if any(spec) else None
            conv_padding = 0
            self.hw_padding = (spec[2], spec[0]) if "pad" in self.order else (0, 0)
        elif "pad" in self.order:
            conv_padding = 0
            self.hw_padding = (0, 0)
        else:
            conv_padding = padding
            tp = _triple(padding, f"{cpath}.padding")
            self.hw_padding = (tp[1], tp[2])
        conv = CONV_TYPES[conv_type](in_channels, out_channels, kernel, padding=conv_padding,
                                     path=cpath, **cp)

        comps = nn.ModuleDict()
        comps["conv"] = conv
        comps["norm"] = get_norm_layer(norm_type, out_channels, self.dim, norm_params,
                                       path=f"{path}.norm_type", params_path=f"{path}.norm_params")
        act = get_activation_layer(act_type, act_params, path=f"{path}.act_type",
                                   params_path=f"{path}.act_params")
        comps["act"] = act
        if dropout is None or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ModelConfigError(f"{path}.dropout", f"expected a number in [0, 1), got {dropout!r}")
        if dropout > 0:
            comps["dropout"] = nn.Dropout(dropout)
        pool = get_pooling_layer(pool_params, self.dim, conv_channels=out_channels,
                                 in_channels=self._channels_at("pool", act),
                                 path=f"{path}.pool_params")
        if pool is not None:
            comps["pool"] = pool
        self.components = comps
        self._output_channels = output_channels_of(act, out_channels)

    def _channels_at(self, stage: str, act: nn.Module) -> int:
        c = self.in_channels
        for name in self.order:
            if name == stage:
                return c
            if name == "conv":
                c = self.out_channels
            elif name == "act":
                c = output_channels_of(act, c)
        return c

    @classmethod
    def from_config(cls, in_channels: int, out_channels: int, cfg: dict | None, path: str,
                    ignored: Sequence[str] = ()) -> "ConvBlock":
        """Build from a YAML block mapping; unknown keys raise, ``ignored`` keys are dropped."""
        if cfg is not None and not isinstance(cfg, dict):
            raise ModelConfigError(f"{path}", f"expected a mapping, got {type(cfg).__name__}")
        p = check_keys(cfg, BLOCK_KEYS, path, ignored)
        return cls(in_channels, out_channels, path=path, **p)

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            if name == "pad":
                if self.pad_spec is not None:
                    x = F.pad(x, self.pad_spec, mode="replicate")
            elif name in self.components:
                x = self.components[name](x)
        return x
