"""Behaviour modulators: ``concat``, ``film``, ``convgru``, ``pc``, ``stn`` and ``none``.

Every modulator is called as ``modulator(features, behavior)`` with features ``(B, C, T, H, W)`` and
behaviour ``(B, behavior_dim)`` and exposes ``output_channels`` (the channel count it hands to the
recurrent stage). ``feature_dim`` (= C) is injected by the builder (the convnet's output channels);
the YAML value is ignored. ``behavior_dim`` is ``params.behavior_dim``, else ``params.n_vars``,
else 2 (legacy ``create_modulator``).

=========  ====================================================  ===============================
type       output                                                channels
=========  ====================================================  ===============================
concat     ``cat([x, broadcast(MLP(b))], 1)``                    C + D
film       ``scale(MLP(b)) * x + shift(MLP(b))``                 C
stn        ``alpha * warp(x) + (1 - alpha) * x``                 C
convgru    ConvGRU over T of ``[x, Linear(b)]``, last T index,   hidden_dim (T collapses to 1)
           1x1 ``output_proj``
pc         ``[A, A - P]`` or ``A - P``: A = last T index,        2C or C (T collapses to 1)
           P = ConvGRU prediction from the earlier frames
=========  ====================================================  ===============================

``pc`` and ``stn`` existed in the refactor era (229991c ... 2521dd0^) only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .mlp import build_encoder
from .recurrent import PREDICTOR_VERSIONS, ConvGRU, PredictorConvGRU
from .refactor_rnn import LATE_OPTIONS, RefactorConvGRU
from .refactor_rnn import convgru_version as _gru_version


def _check_features(x: torch.Tensor, feature_dim: int, name: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{name} modulator: expected features (B, C, T, H, W), got {tuple(x.shape)}")
    if x.shape[1] != feature_dim:
        raise ValueError(f"{name} modulator: expected {feature_dim} feature channels, "
                         f"got {x.shape[1]}")


def _check_behavior(b: torch.Tensor, behavior_dim: int, name: str) -> None:
    if b.ndim != 2 or b.shape[1] != behavior_dim:
        raise ValueError(f"{name} modulator: expected behaviour (B, {behavior_dim}), "
                         f"got {tuple(b.shape)}")


class ConcatModulator(nn.Module):
    """``cat([x, broadcast(e)], dim=1)``, ``e = encoder(beh)`` ``(B, D)``:
    ``(B, C, T, H, W) -> (B, C + D, T, H, W)``. Keys ``encoder.mlp.*``."""

    def __init__(self, feature_dim: int, behavior_dim: int, encoder_params: dict | None = None,
                 path: str = "model.modulator.params"):
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.behavior_dim = int(behavior_dim)
        self.encoder = build_encoder(self.behavior_dim, encoder_params, f"{path}.encoder_params")
        self.output_channels = self.feature_dim + self.encoder.out_dim

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        e = self.encoder(behavior)
        e = e.view(*e.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, e.to(x.dtype)], dim=1)


class FiLMModulator(nn.Module):
    """``scale(e) * x + shift(e)`` with ``e = encoder(beh)``; channels unchanged.
    Init: ``scale_layer`` weight ones / bias 0, ``shift_layer`` all zeros (legacy)."""

    def __init__(self, feature_dim: int, behavior_dim: int, encoder_params: dict | None = None,
                 path: str = "model.modulator.params"):
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.behavior_dim = int(behavior_dim)
        self.encoder = build_encoder(self.behavior_dim, encoder_params, f"{path}.encoder_params")
        h = self.encoder.out_dim
        self.scale_layer = nn.Linear(h, self.feature_dim)
        self.shift_layer = nn.Linear(h, self.feature_dim)
        with torch.no_grad():
            self.scale_layer.weight.fill_(1.0)
            self.scale_layer.bias.zero_()
            self.shift_layer.weight.zero_()
            self.shift_layer.bias.zero_()
        self.output_channels = self.feature_dim

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.feature_dim, "film")
        e = self.encoder(behavior)
        extra = [1] * (x.ndim - 2)
        scale = self.scale_layer(e).view(*e.shape[:1], -1, *extra)
        shift = self.shift_layer(e).view(*e.shape[:1], -1, *extra)
        return scale * x + shift


class SpatialTransformerModulator(nn.Module):
    """``stn``: a behaviour-driven affine warp of every feature frame, blended per channel.

    ``u = encoder(beh)`` ``(B, D)``; ``theta = theta_head(u)`` viewed row-major as ``(B, 2, 3)``
    (``[[a11, a12, tx], [a21, a22, ty]]``, the same for every T); ``alpha = sigmoid(alpha_head(u))``
    ``(B, C)``. Each frame ``x[:, :, t]`` is resampled with ``affine_grid``/``grid_sample``
    (bilinear, zeros padding, ``align_corners=False``): the output at normalised (x, y) reads the
    input at ``(a11 x + a12 y + tx, a21 x + a22 y + ty)``. Output ``alpha * S + (1 - alpha) * x``,
    ``(B, C, T, H, W)``.

    Keys ``encoder.mlp.*``, ``theta_head.{weight [6, D], bias [6]}``, ``alpha_head.{weight [C, D],
    bias [C]}``. Init: theta_head weight 0 and bias ``[1, 0, 0, 0, 1, 0]`` (identity warp);
    alpha_head all 0 (alpha = 0.5), so the output equals the input at init. Encoder defaults:
    ``dims [128, 128]``.
    """

    def __init__(self, feature_dim: int, behavior_dim: int, encoder_params: dict | None = None,
                 path: str = "model.modulator.params"):
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.behavior_dim = int(behavior_dim)
        self.encoder = build_encoder(self.behavior_dim, encoder_params, f"{path}.encoder_params",
                                     default_dim=128)
        d = self.encoder.out_dim
        self.theta_head = nn.Linear(d, 6)
        self.alpha_head = nn.Linear(d, self.feature_dim)
        with torch.no_grad():
            self.theta_head.weight.zero_()
            self.theta_head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
            self.alpha_head.weight.zero_()
            self.alpha_head.bias.zero_()
        self.output_channels = self.feature_dim

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.feature_dim, "stn")
        b, c, t, h, w = x.shape
        u = self.encoder(behavior)
        theta = self.theta_head(u).view(b, 1, 2, 3).expand(b, t, 2, 3).reshape(b * t, 2, 3)
        alpha = torch.sigmoid(self.alpha_head(u)).view(b, c, 1, 1, 1)
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        grid = F.affine_grid(theta.to(x.dtype), [b * t, c, h, w], align_corners=False)
        warped = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        warped = warped.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return alpha * warped + (1 - alpha) * x


class ConvGRUModulator(nn.Module):
    """``convgru`` (legacy ``ConvGRUModulator``).

    ``e = beh_emb(beh)`` (``Linear(behavior_dim -> beh_emb_dim)``; 3-D behaviour ``(B, L, D)`` is
    averaged over L first) is broadcast to ``(B, E, T, H, W)`` and concatenated *after* the features;
    a ConvGRU (``C + E -> hidden_dim``) runs over T; its state at the last T index goes through the
    1x1 ``output_proj`` (``hidden_dim -> hidden_dim``): ``(B, C, T, H, W) -> (B, hidden_dim, 1, H, W)``.

    The ConvGRU depends on ``convgru_version``:

    * ``current`` (default; VisionCore fc9080f on): a 1-layer
      :class:`~neurotrain.model.recurrent.ConvGRU` from h = 0; keys
      ``gru.cells.0.{update_gate,reset_gate,out_gate}.*``; the options below are accepted and ignored
      (as legacy did);
    * ``early`` / ``late`` (VisionCore 229991c ... 90907ab^ / 90907ab ... 2521dd0^): the refactor-era
      :class:`~neurotrain.model.refactor_rnn.RefactorConvGRU`, keys ``gru.cell.conv_x.*``,
      ``gru.cell.conv_h.*`` (late: ``gru.h0``, ``gru.cell.layer_norm.*`` by default). The late era
      reads ``use_layer_norm`` (true), ``learnable_h0`` (true), ``use_depthwise``, ``use_grouped``,
      ``num_groups``, ``use_residual`` and ``grad_clip_val``; the early era ignores them.

    Other keys: ``beh_emb.*``, ``output_proj.*``.
    """

    def __init__(self, feature_dim: int, behavior_dim: int, beh_emb_dim: int = 16,
                 hidden_dim: int | None = None, kernel_size: int = 3, convgru_version: str | None = None,
                 path: str = "model.modulator.params", **late_options):
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.behavior_dim = int(behavior_dim)
        hidden = int(hidden_dim if hidden_dim is not None else feature_dim)
        self.beh_emb = nn.Linear(self.behavior_dim, int(beh_emb_dim))
        c_in = self.feature_dim + int(beh_emb_dim)
        self.convgru_version = "current"
        if convgru_version in (None, "current"):
            self.gru = ConvGRU(c_in, hidden, kernel_size, 1, path=path)
        else:
            version = _gru_version(convgru_version, f"{path}.convgru_version")
            self.convgru_version = version
            opts = late_options if version == "late" else {}
            self.gru = RefactorConvGRU(c_in, hidden, kernel_size, version, path=path, **opts)
        self.output_proj = nn.Conv2d(hidden, hidden, 1)
        self.output_channels = hidden

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.feature_dim, "convgru")
        if behavior.ndim == 3:
            behavior = behavior.mean(dim=1)
        e = self.beh_emb(behavior)
        e = e.view(*e.shape, 1, 1, 1).expand(-1, -1, *x.shape[2:])
        h = self.gru(torch.cat([x, e.to(x.dtype)], dim=1))
        if h.ndim == 5:  # the current ConvGRU returns every T index
            h = h[:, :, -1]
        return self.output_proj(h).unsqueeze(2)


class PredictiveCodingModulator(nn.Module):
    """``pc``: predict the last feature frame from the earlier ones plus behaviour.

    With features F ``(B, C, T, H, W)`` (T >= 2) and behaviour b ``(B, behavior_dim)``:

    1. ``e = beh_emb(b)`` ``(B, E)``, broadcast to ``(B, E, T-1, H, W)``;
    2. ``h = predictor([F[:, :, :T-1], e])`` (channels: features first, then the embedding), the
       final hidden state of a refactor-era ConvGRU (:class:`PredictorConvGRU`, era chosen by
       ``predictor_version``: ``late`` (default; 90907ab ... 2521dd0^: learnable ``h0``, GroupNorm
       on the recurrent term, ``n = tanh(n~ + r*h)``) or ``early`` (229991c ... 90907ab^: h0 = 0, no
       norm, ``n = tanh(n~)``, reset gate unused));
    3. ``P = h`` if ``hidden_dim == C`` else ``output_proj(h)`` (1x1 conv ``hidden_dim -> C``);
    4. ``A = F[:, :, T-1]``; ``Err = A - P`` ``(B, C, H, W)``;
    5. output ``cat([A, Err], 1)`` (``concat_error``, default) or ``Err``, with a T axis of 1:
       ``(B, 2C or C, 1, H, W)``.

    In training mode the error is kept (with its graph) for the auxiliary loss; see
    :meth:`pop_prediction_error`. Eval-mode forwards leave it untouched (as legacy did).

    Keys: ``beh_emb.{weight [E, b], bias [E]}``, ``predictor.cell.conv_x.{weight [3Hd, C+E, k, k],
    bias [3Hd]}``, ``predictor.cell.conv_h.weight [3Hd, Hd, k, k]``; late era also
    ``predictor.h0 [1, Hd, 1, 1]`` and ``predictor.cell.layer_norm.{weight,bias} [3Hd]``;
    ``output_proj.{weight [C, Hd, 1, 1], bias [C]}`` only when ``hidden_dim != C``.

    NOTE ``output_proj``: legacy created it lazily at the first forward, after the optimizer had been
    built, so it was never trained (and a fresh legacy model lacks its keys). Here it is created
    eagerly in ``__init__`` and is an ordinary trainable parameter. The shipped config has
    ``hidden_dim == C``, so it does not arise there.
    """

    def __init__(self, feature_dim: int, behavior_dim: int, hidden_dim: int | None = None,
                 beh_emb_dim: int = 16, kernel_size: int = 3, concat_error: bool = True,
                 predictor_version: str = "late", path: str = "model.modulator.params"):
        super().__init__()
        version = PREDICTOR_VERSIONS.get(str(predictor_version).lower())
        if version is None:
            raise unknown_type(f"{path}.predictor_version", predictor_version, PREDICTOR_VERSIONS)
        self.feature_dim = int(feature_dim)
        self.behavior_dim = int(behavior_dim)
        self.hidden_dim = int(hidden_dim if hidden_dim is not None else feature_dim)
        self.beh_emb_dim = int(beh_emb_dim)
        self.concat_error = bool(concat_error)
        self.predictor_version = version
        self.beh_emb = nn.Linear(self.behavior_dim, self.beh_emb_dim)
        self.predictor = PredictorConvGRU(self.feature_dim + self.beh_emb_dim, self.hidden_dim,
                                          kernel_size, version, path=path)
        if self.hidden_dim != self.feature_dim:
            self.output_proj = nn.Conv2d(self.hidden_dim, self.feature_dim, 1)
        else:
            self.output_proj = None
        self.output_channels = 2 * self.feature_dim if self.concat_error else self.feature_dim
        self.pred_err: torch.Tensor | None = None

    def pop_prediction_error(self) -> torch.Tensor | None:
        """The error ``(B, C, H, W)`` of the most recent training-mode forward (None if there was
        none since the last call); clears it."""
        err, self.pred_err = self.pred_err, None
        return err

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.feature_dim, "pc")
        _check_behavior(behavior, self.behavior_dim, "pc")
        b, c, t, h, w = x.shape
        if t < 2:
            raise ValueError(f"pc modulator: need at least 2 time steps to predict the last one, "
                             f"got T={t}")
        e = self.beh_emb(behavior).to(x.dtype)
        e = e.view(b, -1, 1, 1, 1).expand(-1, -1, t - 1, h, w)
        hidden = self.predictor(torch.cat([x[:, :, : t - 1], e], dim=1))
        pred = self.output_proj(hidden) if self.output_proj is not None else hidden
        actual = x[:, :, t - 1]
        err = actual - pred
        if self.training:
            self.pred_err = err
        out = torch.cat([actual, err], dim=1) if self.concat_error else err
        return out.unsqueeze(2)


MODULATOR_TYPES = {"concat": ConcatModulator, "film": FiLMModulator, "convgru": ConvGRUModulator,
                   "pc": PredictiveCodingModulator, "stn": SpatialTransformerModulator}

# Refactor-era ConvGRU options: legacy HEAD's convgru modulator and the pc modulator read none of them.
_CONVGRU_IGNORED = ("use_layer_norm", "learnable_h0", "use_depthwise", "use_grouped", "num_groups",
                    "use_residual", "grad_clip_val", "fast_phase")
_COMMON = ("behavior_dim", "n_vars", "feature_dim")
# (keys used, keys legacy accepted and ignored) per type
_MODULATOR_KEYS = {
    "concat": (_COMMON + ("encoder_params",), ()),
    "film": (_COMMON + ("encoder_params",), ()),
    "stn": (_COMMON + ("encoder_params",), ()),
    "convgru": (_COMMON + ("beh_emb_dim", "hidden_dim", "kernel_size", "convgru_version") + LATE_OPTIONS,
                ("fast_phase",)),
    "pc": (_COMMON + ("beh_emb_dim", "hidden_dim", "kernel_size", "concat_error",
                      "predictor_version"), _CONVGRU_IGNORED),
}


def build_modulator(mtype, params: dict | None, feature_dim: int, path: str = "model.modulator"):
    """Return the modulator for ``(B, feature_dim, T, H, W)`` features, or None for ``none``.

    Params per type: see the classes; unknown keys raise :class:`ModelConfigError`."""
    t = str(mtype).lower() if mtype is not None else "none"
    if t == "none":
        return None
    if t not in MODULATOR_TYPES:
        raise unknown_type(f"{path}.type", mtype, list(MODULATOR_TYPES) + ["none"])
    used, ignored = _MODULATOR_KEYS[t]
    p = check_keys(params, used, f"{path}.params", ignored)
    n_vars = p.pop("n_vars", None)
    behavior_dim = p.pop("behavior_dim", n_vars if n_vars is not None else 2)
    p.pop("feature_dim", None)  # the YAML value is ignored: the convnet's channels are used
    try:
        behavior_dim = int(behavior_dim)
    except (TypeError, ValueError):
        raise ModelConfigError(f"{path}.params.behavior_dim", f"expected an int, "
                               f"got {behavior_dim!r}") from None
    return MODULATOR_TYPES[t](feature_dim=int(feature_dim), behavior_dim=behavior_dim,
                              path=f"{path}.params", **p)
