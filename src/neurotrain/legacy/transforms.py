"""The legacy dataset transform pipeline (``transforms:`` of a legacy dataset YAML), on a neurotrain session.

A legacy dataset YAML declares named transforms::

    transforms:
      eye_vel:
        source: eyepos                  # a raw per-bin array of the session
        ops: [{diff: {axis: 0}}, {maxnorm: {}}, {symlog: {}}, {temporal_basis: {...}}, {splitrelu: {...}}]
        expose_as: behavior             # output key
        concatenate: true               # outputs sharing an expose_as are concatenated (last dim, YAML order)
      eye_pos: {source: eyepos, ops: [], expose_as: behavior, concatenate: true}

:func:`prepare_session` runs them on a session's raw arrays and returns a :class:`PreparedSession`
(behaviour matrix, validity mask restricted to the config's ``cids``, stimulus-type row mask, lags).

Sources: ``session.covariates[name]`` (e.g. ``eyepos``), or ``stim`` (the frames), ``robs``,
``behavior``, ``dfs``, ``trial_inds``; a source may also name the output of an earlier transform.
Every source is cast to float32 first, as in the legacy code.

The stimulus is special: neurotrain keeps frames as uint8 and normalises ``(x - 127) / 255`` on the
device (the legacy ``--dset_dtype uint8`` path), so a transform of ``stim`` may only contain
``pixelnorm`` and ``unsqueeze: 1`` and is not computed here.

Ops (applied in order): ``pixelnorm``, ``unsqueeze``, ``diff``, ``mul``, ``maxnorm``, ``symlog``,
``temporal_basis``, ``splitrelu``, ``cast``, ``select_units``, ``smooth``. ``dacones`` and
``fftwhitening`` (stimulus ops) are recognised and rejected with an explanation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .dataset_config import (
    LegacyConfigError,
    config_error,
    config_origin,
    session_config_path,
    stim_lags,
)

__all__ = [
    "LegacyConfigError",
    "KNOWN_OPS",
    "UNSUPPORTED_OPS",
    "PreparedSession",
    "prepare_session",
    "run_transforms",
    "validate_transforms",
    "parse_op",
    "raised_cosine_basis",
    "apply_temporal_basis",
    "gaussian_smooth",
    "resolve_unit_index",
    "resolve_source",
]


# ----------------------------------------------------------------------------------------------
# op parameter parsing
# ----------------------------------------------------------------------------------------------


class _ParamError(ValueError):
    """Raised by the op parsers; turned into a LegacyConfigError with file/key context."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _no_params(name: str, cfg: Any) -> dict:
    if cfg is None or cfg is True or (isinstance(cfg, Mapping) and not cfg):
        return {}
    raise _ParamError(f"op {name!r} takes no parameters, got {cfg!r}")


def _params_dict(name: str, cfg: Any, allowed: Mapping[str, Any]) -> dict:
    """cfg (None or a mapping) -> dict of the allowed keys with defaults filled in."""
    if cfg is None or cfg is True:
        cfg = {}
    if not isinstance(cfg, Mapping):
        raise _ParamError(f"op {name!r} expects a mapping of parameters {sorted(allowed)}, got {cfg!r}")
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise _ParamError(f"op {name!r}: unknown parameter(s) {unknown} (accepted: {sorted(allowed)})")
    out = dict(allowed)
    out.update(cfg)
    return out


def _p_pixelnorm(cfg: Any) -> dict:
    return _no_params("pixelnorm", cfg)


def _p_unsqueeze(cfg: Any) -> dict:
    if _is_int(cfg):
        return {"axis": cfg}
    if isinstance(cfg, Mapping):
        keys = set(cfg)
        if len(keys) == 1 and keys <= {"axis", "dim"} and _is_int(next(iter(cfg.values()))):
            return {"axis": next(iter(cfg.values()))}
    raise _ParamError(f"op 'unsqueeze' expects an int axis (e.g. `unsqueeze: 1`) or {{axis: int}}, got {cfg!r}")


def _p_diff(cfg: Any) -> dict:
    if _is_int(cfg):
        return {"axis": cfg}
    p = _params_dict("diff", cfg, {"axis": 0})
    if not _is_int(p["axis"]):
        raise _ParamError(f"op 'diff': axis must be an int, got {p['axis']!r}")
    return p


def _p_mul(cfg: Any) -> dict:
    if _is_num(cfg):
        return {"factor": float(cfg)}
    if isinstance(cfg, Mapping) and len(cfg) == 1:
        (k, v), = cfg.items()
        if k in ("factor", "value") and _is_num(v):
            return {"factor": float(v)}
    raise _ParamError(f"op 'mul' expects a number (e.g. `mul: 240`) or {{factor: number}}, got {cfg!r}")


def _p_maxnorm(cfg: Any) -> dict:
    return _no_params("maxnorm", cfg)


def _p_symlog(cfg: Any) -> dict:
    return _no_params("symlog", cfg)


_TB_DEFAULTS = {
    "num_delta_funcs": 0,
    "num_cosine_funcs": 10,
    "history_bins": 32,
    "log_spacing": True,
    "peak_range_ms": (5, 100),
    "bin_size_ms": 5,
    "normalize": True,
    "orthogonalize": False,
    "causal": True,
    "batch_norm": False,
    "chomp": None,
}


def _p_temporal_basis(cfg: Any) -> dict:
    p = _params_dict("temporal_basis", cfg, _TB_DEFAULTS)
    for k in ("num_delta_funcs", "num_cosine_funcs"):
        if not (_is_int(p[k]) and p[k] >= 0):
            raise _ParamError(f"op 'temporal_basis': {k} must be an int >= 0, got {p[k]!r}")
    if p["num_delta_funcs"] + p["num_cosine_funcs"] < 1:
        raise _ParamError("op 'temporal_basis': needs at least one basis function")
    if not (_is_int(p["history_bins"]) and p["history_bins"] >= 1):
        raise _ParamError(f"op 'temporal_basis': history_bins must be a positive int, got {p['history_bins']!r}")
    if p["num_delta_funcs"] > p["history_bins"]:
        raise _ParamError("op 'temporal_basis': num_delta_funcs cannot exceed history_bins")
    pr = p["peak_range_ms"]
    if not (isinstance(pr, (list, tuple)) and len(pr) == 2 and all(_is_num(v) for v in pr)):
        raise _ParamError(f"op 'temporal_basis': peak_range_ms must be [first, last] in ms, got {pr!r}")
    p["peak_range_ms"] = (float(pr[0]), float(pr[1]))
    if not (_is_num(p["bin_size_ms"]) and p["bin_size_ms"] > 0):
        raise _ParamError(f"op 'temporal_basis': bin_size_ms must be > 0, got {p['bin_size_ms']!r}")
    for k in ("log_spacing", "normalize", "causal", "orthogonalize", "batch_norm"):
        if not isinstance(p[k], bool):
            raise _ParamError(f"op 'temporal_basis': {k} must be true or false, got {p[k]!r}")
    if p["num_cosine_funcs"] == 1:
        raise _ParamError("op 'temporal_basis': num_cosine_funcs: 1 is undefined in the legacy basis "
                          "(the cosine width is twice the spacing of the first two peaks); use 0 or >= 2")
    if p["num_cosine_funcs"] >= 2:
        p0, p1 = p["peak_range_ms"]
        if p1 <= p0:
            raise _ParamError(f"op 'temporal_basis': peak_range_ms must be increasing, got {list(pr)}")
        if p["log_spacing"] and p0 <= 0:
            raise _ParamError(f"op 'temporal_basis': log spacing needs peak_range_ms > 0, got {list(pr)}")
    if p["orthogonalize"]:
        raise _ParamError("op 'temporal_basis': orthogonalize: true is not supported (its legacy semantics in "
                          "DataYatesV1 are unknown); remove it or set it to false")
    if p["batch_norm"]:
        raise _ParamError("op 'temporal_basis': batch_norm: true is not supported in a data transform "
                          "(a fresh, untrained BatchNorm has no defined output); set it to false")
    if p["chomp"] not in (None, 0):
        raise _ParamError("op 'temporal_basis': chomp is not supported in a data transform (it drops time bins "
                          "and would misalign the behaviour with the stimulus); remove it")
    return p


def _p_splitrelu(cfg: Any) -> dict:
    p = _params_dict("splitrelu", cfg, {"split_dim": 1, "trainable_gain": False})
    if not _is_int(p["split_dim"]):
        raise _ParamError(f"op 'splitrelu': split_dim must be an int, got {p['split_dim']!r}")
    if not isinstance(p["trainable_gain"], bool):
        raise _ParamError(f"op 'splitrelu': trainable_gain must be true or false, got {p['trainable_gain']!r}")
    return p


_DTYPES = {
    "float32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64, "double": torch.float64,
    "int64": torch.int64, "long": torch.int64,
    "int32": torch.int32, "int": torch.int32,
    "int16": torch.int16, "uint8": torch.uint8, "bool": torch.bool,
}


def _p_cast(cfg: Any) -> dict:
    if isinstance(cfg, Mapping) and set(cfg) == {"dtype"}:
        cfg = cfg["dtype"]
    if isinstance(cfg, str):
        name = cfg[len("torch."):] if cfg.startswith("torch.") else cfg
        if name in _DTYPES:
            return {"dtype": name}
    raise _ParamError(f"op 'cast' expects a dtype name (one of {sorted(_DTYPES)}), got {cfg!r}")


def _p_select_units(cfg: Any) -> dict:
    if isinstance(cfg, Mapping) and set(cfg) == {"indices"}:
        cfg = cfg["indices"]
    if cfg == "cids":
        return {"indices": "cids"}
    if isinstance(cfg, list) and cfg and all(_is_int(v) for v in cfg):
        return {"indices": list(cfg)}
    raise _ParamError(f"op 'select_units' expects {{indices: cids}} or {{indices: [cluster ids]}}, got {cfg!r}")


def _p_smooth(cfg: Any) -> dict:
    if _is_num(cfg):
        cfg = {"type": "gaussian", "params": cfg}
    if isinstance(cfg, list) and all(isinstance(e, Mapping) for e in cfg):
        # the list-of-one-key-dicts spelling seen in legacy YAMLs: [{type: gaussian}, {params: 1.0}]
        merged: dict = {}
        for e in cfg:
            merged.update(e)
        cfg = merged
    if isinstance(cfg, Mapping):
        unknown = sorted(set(cfg) - {"type", "params", "sigma"})
        if unknown:
            raise _ParamError(f"op 'smooth': unknown parameter(s) {unknown} (accepted: type, params)")
        kind = cfg.get("type", "gaussian")
        if kind != "gaussian":
            raise _ParamError(f"op 'smooth': only type gaussian is supported, got {kind!r}")
        if "params" in cfg and "sigma" in cfg:
            raise _ParamError("op 'smooth': give the Gaussian sigma once (params), not both params and sigma")
        sigma = cfg.get("params", cfg.get("sigma"))
        if isinstance(sigma, Mapping) and set(sigma) == {"sigma"}:
            sigma = sigma["sigma"]
        if _is_num(sigma) and sigma > 0:
            return {"sigma": float(sigma)}
        raise _ParamError(f"op 'smooth': params must be the Gaussian sigma in bins (> 0), got {sigma!r}")
    raise _ParamError(f"op 'smooth' expects a sigma or {{type: gaussian, params: sigma}}, got {cfg!r}")


_PARSERS: dict[str, Callable[[Any], dict]] = {
    "pixelnorm": _p_pixelnorm,
    "unsqueeze": _p_unsqueeze,
    "diff": _p_diff,
    "mul": _p_mul,
    "maxnorm": _p_maxnorm,
    "symlog": _p_symlog,
    "temporal_basis": _p_temporal_basis,
    "splitrelu": _p_splitrelu,
    "cast": _p_cast,
    "select_units": _p_select_units,
    "smooth": _p_smooth,
}

#: ops neurotrain implements
KNOWN_OPS: tuple[str, ...] = tuple(_PARSERS)

#: legacy ops that are recognised but rejected, with the reason
UNSUPPORTED_OPS: dict[str, str] = {
    "dacones": "it filters the stimulus with a dynamical-adaptation cone model, but neurotrain keeps the stimulus "
               "as uint8 frames normalised on the device (like the legacy --dset_dtype uint8 path, which also "
               "rejected it); preprocess the frames before ingesting the session instead",
    "fftwhitening": "it whitens the stimulus with a 3-D FFT filter, but neurotrain keeps the stimulus as uint8 frames "
                    "normalised on the device (like the legacy --dset_dtype uint8 path, which also rejected it); "
                    "whiten the frames before ingesting the session instead",
}

_STIM_OPS = ("pixelnorm", "unsqueeze")


def parse_op(entry: Any) -> tuple[str, dict]:
    """One entry of an ``ops`` list (``{op: cfg}`` or a bare op name) -> ``(op, params)``.

    Raises ``ValueError`` (without file context) for unknown or unsupported ops and bad parameters;
    :func:`validate_transforms` adds the file and key.
    """
    if isinstance(entry, str):
        name, cfg = entry, None
    elif isinstance(entry, Mapping) and len(entry) == 1:
        (name, cfg), = entry.items()
    else:
        raise _ParamError(f"each op must be a one-key mapping like {{diff: {{axis: 0}}}}, got {entry!r}")
    if name in UNSUPPORTED_OPS:
        raise _ParamError(f"op {name!r} is not supported: {UNSUPPORTED_OPS[name]}")
    if name not in _PARSERS:
        raise _ParamError(f"unknown op {name!r} (known ops: {', '.join(KNOWN_OPS)})")
    return name, _PARSERS[name](cfg)


# ----------------------------------------------------------------------------------------------
# the transform blocks of a config
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Transform:
    name: str
    source: str
    ops: tuple[tuple[str, dict], ...]
    expose_as: str
    concatenate: bool
    keys_lags: Any
    file: str  # where the block is defined (for errors)


_BLOCK_KEYS = {"source", "ops", "expose_as", "concatenate", "keys_lags"}


def _parse_transforms(cfg: Mapping) -> list[_Transform]:
    tf = cfg.get("transforms")
    if tf is None:
        return []
    if not isinstance(tf, Mapping):
        raise config_error(config_origin(cfg, "transforms"), "transforms",
                           f"expected a mapping of name -> {{source, ops, expose_as}}, got {tf!r}")
    out: list[_Transform] = []
    for tname, block in tf.items():
        file = config_origin(cfg, "transforms", str(tname))
        key = f"transforms.{tname}"
        if block is None:  # e.g. a transform disabled by a session override `name: null`
            continue
        if not isinstance(block, Mapping):
            raise config_error(file, key, f"expected a mapping {{source, ops, expose_as}}, got {block!r}")
        extra = sorted(set(block) - _BLOCK_KEYS)
        if extra:
            warnings.warn(f"{file}: {key}: ignoring unknown key(s) {extra} (known: {sorted(_BLOCK_KEYS)})",
                          stacklevel=2)
        source = block.get("source")
        if not isinstance(source, str) or not source:
            raise config_error(file, f"{key}.source", f"required: the name of the input array, got {source!r}")
        expose_as = block.get("expose_as", tname)
        if not isinstance(expose_as, str) or not expose_as:
            raise config_error(file, f"{key}.expose_as", f"expected an output key name, got {expose_as!r}")
        concatenate = block.get("concatenate", False)
        if not isinstance(concatenate, bool):
            raise config_error(file, f"{key}.concatenate", f"expected true or false, got {concatenate!r}")
        ops_raw = block.get("ops", [])
        if ops_raw is None:
            ops_raw = []
        if not isinstance(ops_raw, list):
            raise config_error(file, f"{key}.ops", f"expected a list of {{op: params}}, got {ops_raw!r}")
        ops = []
        for i, entry in enumerate(ops_raw):
            try:
                ops.append(parse_op(entry))
            except _ParamError as e:
                raise config_error(file, f"{key}.ops[{i}]", f"transform {tname!r}: {e}") from None
        t = _Transform(str(tname), source, tuple(ops), expose_as, concatenate, block.get("keys_lags"), file)
        if source == "stim" or expose_as == "stim":
            _check_stim_transform(t)
        out.append(t)
    return out


def _check_stim_transform(t: _Transform) -> None:
    key = f"transforms.{t.name}"
    why = ("neurotrain keeps the stimulus as uint8 frames and normalises them as (x - 127) / 255 on the device "
           "(the legacy --dset_dtype uint8 path), so a stimulus transform may only contain pixelnorm and unsqueeze: 1")
    if t.source != "stim" or t.expose_as != "stim":
        raise config_error(t.file, key, f"a stimulus transform must read source `stim` and expose_as `stim` "
                                        f"(got source {t.source!r}, expose_as {t.expose_as!r}); {why}")
    if t.concatenate:
        raise config_error(t.file, f"{key}.concatenate", f"cannot concatenate onto the stimulus; {why}")
    for i, (op, p) in enumerate(t.ops):
        if op not in _STIM_OPS:
            raise config_error(t.file, f"{key}.ops[{i}]", f"op {op!r} is not allowed on the stimulus; {why}")
        if op == "unsqueeze" and p["axis"] != 1:
            raise config_error(t.file, f"{key}.ops[{i}]",
                               f"unsqueeze: {p['axis']} is not supported on the stimulus (only unsqueeze: 1, giving the "
                               f"channel dimension (T, 1, H, W) that neurotrain always uses)")


def validate_transforms(cfg: Mapping) -> None:
    """Check the ``transforms`` block of a merged config (ops, parameters, stimulus rules)."""
    _parse_transforms(cfg)


# ----------------------------------------------------------------------------------------------
# numerical ops
# ----------------------------------------------------------------------------------------------


def raised_cosine_basis(
    num_delta_funcs: int = 0,
    num_cosine_funcs: int = 10,
    history_bins: int = 32,
    log_spacing: bool = True,
    peak_range_ms: tuple[float, float] = (5, 100),
    bin_size_ms: float = 5,
    normalize: bool = True,
) -> np.ndarray:
    """Raised-cosine temporal basis, (num_delta + num_cosine, history_bins + 1) float64.

    Column ``k`` is the weight of lag ``k`` (0 = current bin). Delta functions come first (delta ``i``
    has a 1 at bin ``i`` of the history). Cosines are ``(cos(arg) + 1) / 2``, zero where
    ``|arg| > pi``, on ``t_ms = bin * bin_size_ms``:

    * linear: centres ``linspace(p0, p1, n)``, ``width = 2 (c1 - c0)``, ``arg = (t_ms - c) pi / width``;
    * log: centres ``exp(linspace(log p0, log p1, n))``, ``width = 2 (log c1 - log c0)``,
      ``arg = (log(t_ms + 1e-6) - log c) pi / width``.

    A zero column is prepended (so the kernel has ``history_bins + 1`` taps and lag 0 has weight 0);
    with ``normalize`` each row is scaled to unit L2 norm (an all-zero row stays zero).
    """
    nd, nc, hb = int(num_delta_funcs), int(num_cosine_funcs), int(history_bins)
    rows = []
    for i in range(nd):
        r = np.zeros(hb)
        r[i] = 1.0
        rows.append(r)
    if nc:
        if nc < 2:
            raise ValueError("num_cosine_funcs must be 0 or >= 2")
        t_ms = np.arange(hb, dtype=np.float64) * float(bin_size_ms)
        p0, p1 = float(peak_range_ms[0]), float(peak_range_ms[1])
        if log_spacing:
            centres = np.exp(np.linspace(np.log(p0), np.log(p1), nc))
            width = 2.0 * (np.log(centres[1]) - np.log(centres[0]))
            arg = (np.log(t_ms + 1e-6)[None, :] - np.log(centres)[:, None]) * np.pi / width
        else:
            centres = np.linspace(p0, p1, nc)
            width = 2.0 * (centres[1] - centres[0])
            arg = (t_ms[None, :] - centres[:, None]) * np.pi / width
        cos = (np.cos(arg) + 1.0) / 2.0
        cos[np.abs(arg) > np.pi] = 0.0
        rows.extend(cos)
    basis = np.stack(rows) if rows else np.zeros((0, hb))
    basis = np.concatenate([np.zeros((basis.shape[0], 1)), basis], axis=1)
    if normalize:
        norm = np.linalg.norm(basis, axis=1, keepdims=True)
        basis = np.where(norm > 0, basis / np.where(norm > 0, norm, 1.0), 0.0)
    return basis


def apply_temporal_basis(x: torch.Tensor, basis: torch.Tensor | np.ndarray, causal: bool = True) -> torch.Tensor:
    """Convolve every channel of ``x`` with every row of ``basis`` (nb, L) along dim 0 (time).

    ``x`` (T,) or (T, C) -> (T, C * nb), channel-major (index ``c * nb + b``); (T, H, W) -> (T, nb, H, W).

    causal: output ``t`` = sum_k basis[b, k] x[t - k] (zero padding before the start).
    acausal: the un-flipped basis on a (L // 2, L - 1 - L // 2) zero-padded input, i.e. output
    ``t`` = sum_j basis[b, j] x[t + j - L // 2] (the legacy TemporalBasis ``causal: false``).
    """
    b = torch.as_tensor(basis, dtype=torch.float32)
    nb, L = b.shape
    x = x.to(torch.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim == 2:
        T, C = x.shape
        inp = x.t().unsqueeze(0)  # (1, C, T)
        groups = C
        w = (b.flip(-1) if causal else b).unsqueeze(1).repeat(C, 1, 1)  # (C*nb, 1, L), channel-major
    elif x.ndim == 3:
        T, H, W = x.shape
        inp = x.reshape(T, H * W).t().unsqueeze(1)  # (HW, 1, T)
        groups = 1
        w = (b.flip(-1) if causal else b).unsqueeze(1)  # (nb, 1, L)
    else:
        raise ValueError(f"temporal_basis expects a (T,), (T, C) or (T, H, W) input, got shape {tuple(x.shape)}")
    pad = (L - 1, 0) if causal else (L // 2, L - 1 - L // 2)
    y = F.conv1d(F.pad(inp, pad), w, groups=groups)
    if x.ndim == 2:
        return y[0].t().contiguous()  # (T, C*nb)
    return y.reshape(H, W, nb, T).permute(3, 2, 0, 1).contiguous()  # (T, nb, H, W)


def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """1-D Gaussian smoothing along dim 0: kernel ``int(6 sigma) + 1`` taps (forced odd), unit sum,
    reflect padding (the edge sample is not repeated)."""
    size = int(6 * sigma) + 1
    if size % 2 == 0:
        size += 1
    half = size // 2
    t = torch.arange(size, dtype=torch.float64) - half
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = (k / k.sum()).to(torch.float32)
    x = x.to(torch.float32)
    T = x.shape[0]
    if half >= T:
        raise ValueError(f"smooth: a Gaussian of sigma {sigma} needs more than {half} time bins (have {T})")
    flat = x.reshape(T, -1).t().unsqueeze(1)  # (M, 1, T)
    y = F.conv1d(F.pad(flat, (half, half), mode="reflect"), k.view(1, 1, -1))
    return y[:, 0, :].t().reshape(x.shape).contiguous()


def _dim(ndim: int, d: int, what: str) -> int:
    if not -ndim <= d < ndim:
        raise ValueError(f"{what} {d} is out of range for a {ndim}-D array")
    return d % ndim


def _apply_op(x: torch.Tensor, op: str, p: dict, ctx: "_Ctx") -> torch.Tensor:
    if op == "pixelnorm":
        return (x - 127.0) / 255.0
    if op == "unsqueeze":
        return x.unsqueeze(_dim(x.ndim + 1, p["axis"], "unsqueeze axis"))
    if op == "diff":
        d = _dim(x.ndim, p["axis"], "diff axis")
        return torch.diff(x, dim=d, prepend=x.narrow(d, 0, 1))
    if op == "mul":
        return x * p["factor"]
    if op == "maxnorm":
        m = x.abs().max() if x.numel() else torch.tensor(0.0)
        return x / m if float(m) > 0 else x  # an all-zero tensor stays zero (no 0/0)
    if op == "symlog":
        return torch.sign(x) * torch.log1p(x.abs())
    if op == "temporal_basis":
        basis = raised_cosine_basis(p["num_delta_funcs"], p["num_cosine_funcs"], p["history_bins"],
                                    p["log_spacing"], p["peak_range_ms"], p["bin_size_ms"], p["normalize"])
        return apply_temporal_basis(x, basis, causal=p["causal"])
    if op == "splitrelu":
        d = _dim(x.ndim, p["split_dim"], "splitrelu split_dim")
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=d)
    if op == "cast":
        return x.to(_DTYPES[p["dtype"]])
    if op == "select_units":
        idx = ctx.unit_index if p["indices"] == "cids" else ctx.unit_positions(p["indices"])
        return x[..., torch.as_tensor(idx, dtype=torch.long)]
    if op == "smooth":
        return gaussian_smooth(x, p["sigma"]).detach()
    raise AssertionError(op)  # parse_op guarantees a known op


# ----------------------------------------------------------------------------------------------
# sources, units, stimulus types
# ----------------------------------------------------------------------------------------------


def _covariates(session: Any) -> Mapping[str, np.ndarray]:
    cov = getattr(session, "covariates", None)
    return cov if isinstance(cov, Mapping) else {}


def _session_name(session: Any) -> str:
    return str(getattr(session, "name", "?"))


def resolve_source(session: Any, name: str) -> np.ndarray | None:
    """The raw per-bin array called ``name`` in a session (covariates first), or None."""
    cov = _covariates(session)
    if name in cov:
        return cov[name]
    builtin = {"stim": "frames", "robs": "robs", "behavior": "behavior", "dfs": "dfs",
               "trial_inds": "trial_ids", "trial_ids": "trial_ids"}
    if name in builtin:
        return getattr(session, builtin[name], None)
    return None


def _available_sources(session: Any) -> list[str]:
    names = sorted(_covariates(session))
    for n, attr in (("stim", "frames"), ("robs", "robs"), ("behavior", "behavior"), ("dfs", "dfs"),
                    ("trial_inds", "trial_ids")):
        if getattr(session, attr, None) is not None:
            names.append(n)
    return names


def _find_ids(ids: np.ndarray, wanted: list[int]) -> tuple[np.ndarray, list[int]]:
    pos = {int(v): i for i, v in enumerate(np.asarray(ids).tolist())}
    missing = [int(c) for c in wanted if int(c) not in pos]
    idx = np.asarray([pos.get(int(c), -1) for c in wanted], dtype=np.int64)
    return idx, missing


def resolve_unit_index(session: Any, cfg: Mapping) -> np.ndarray:
    """Positions in the session's neurons of the config's ``cids`` (matched against ``neuron_ids``)."""
    cids = cfg.get("cids")
    where = config_origin(cfg, "cids")
    if not isinstance(cids, list) or not cids or not all(_is_int(c) for c in cids):
        raise config_error(where, "cids", f"expected a non-empty list of ints, got {cids!r}")
    ids = getattr(session, "neuron_ids", None)
    if ids is None:
        ids = np.arange(np.asarray(session.robs).shape[1])
    idx, missing = _find_ids(ids, cids)
    if missing:
        shown = missing[:20] + (["..."] if len(missing) > 20 else [])
        raise config_error(where, "cids",
                           f"{len(missing)} cluster id(s) are not units of session {_session_name(session)!r}: "
                           f"{shown} (the session store has {len(ids)} units)")
    return idx


def _row_mask(session: Any, cfg: Mapping, T: int) -> np.ndarray:
    types = cfg.get("types")
    cov = _covariates(session)
    if not types or "stim_type" not in cov:
        return np.ones(T, dtype=bool)
    codes = np.asarray(cov["stim_type"]).reshape(-1)
    if codes.shape[0] != T:
        raise config_error(session_config_path(cfg), "types",
                           f"session {_session_name(session)!r}: covariate 'stim_type' has {codes.shape[0]} rows, "
                           f"expected {T}")
    names = getattr(session, "stim_type_names", None)
    if names is None:
        raise config_error(config_origin(cfg, "types"), "types",
                           f"session {_session_name(session)!r} has a 'stim_type' covariate but no stim_type_names")
    if isinstance(names, Mapping):
        by_name: dict[str, list[int]] = {}
        for code, n in names.items():
            by_name.setdefault(str(n), []).append(int(code))
    else:
        by_name = {}
        for code, n in enumerate(names):
            by_name.setdefault(str(n), []).append(code)
    want = [c for t in types for c in by_name.get(t, [])]
    absent = [t for t in types if t not in by_name]
    if len(absent) == len(types):
        raise config_error(config_origin(cfg, "types"), "types",
                           f"none of the stimulus types {list(types)} is in session {_session_name(session)!r} "
                           f"(it has {sorted(by_name)})")
    if absent:  # legacy: a type the session lacks is skipped
        warnings.warn(f"{config_origin(cfg, 'types')}: types: session {_session_name(session)!r} has no "
                      f"{absent} data; using {[t for t in types if t not in absent]}", stacklevel=3)
    return np.isin(codes, np.asarray(want, dtype=codes.dtype if codes.dtype.kind in "iu" else np.int64))


class _Ctx:
    def __init__(self, session: Any, cfg: Mapping, unit_index: np.ndarray):
        self.session, self.cfg, self.unit_index = session, cfg, unit_index

    def unit_positions(self, ids: list[int]) -> np.ndarray:
        idx, missing = _find_ids(getattr(self.session, "neuron_ids", np.arange(0)), ids)
        if missing:
            raise ValueError(f"select_units: cluster id(s) {missing[:20]} are not units of the session")
        return idx


# ----------------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------------


def run_transforms(session: Any, cfg: Mapping, unit_index: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run the non-stimulus transforms of ``cfg`` on ``session``; returns ``{expose_as: array}``.

    Outputs sharing an ``expose_as`` with ``concatenate: true`` are concatenated along the last dim in
    YAML order; otherwise a later output replaces an earlier one. Arrays are float32 unless a ``cast``
    says otherwise (``bfloat16`` is rounded to bfloat16 and returned as float32).
    """
    transforms = _parse_transforms(cfg)
    if unit_index is None and any(op == "select_units" for t in transforms for op, _ in t.ops):
        unit_index = resolve_unit_index(session, cfg)
    ctx = _Ctx(session, cfg, unit_index if unit_index is not None else np.arange(0))
    sess_yaml = session_config_path(cfg)
    name = _session_name(session)
    T = len(np.asarray(getattr(session, "trial_ids")))
    outputs: dict[str, torch.Tensor] = {}
    for t in transforms:
        if t.source == "stim":
            continue  # kept as uint8 and normalised on the device (checked by _check_stim_transform)
        key = f"transforms.{t.name}"
        if t.source in outputs:
            x = outputs[t.source]
        else:
            raw = resolve_source(session, t.source)
            if raw is None:
                raise config_error(t.file, f"{key}.source",
                                   f"session {name!r} ({sess_yaml}) has no array {t.source!r} "
                                   f"(available: {_available_sources(session)})")
            x = torch.as_tensor(np.asarray(raw, dtype=np.float32).copy())
            if x.ndim == 0 or x.shape[0] != T:
                raise config_error(t.file, f"{key}.source",
                                   f"session {name!r}: {t.source!r} has shape {tuple(x.shape)}, expected {T} time bins first")
            if not torch.isfinite(x).all():
                bad = int((~torch.isfinite(x)).sum())
                raise config_error(t.file, f"{key}.source",
                                   f"session {name!r}: {t.source!r} has {bad} NaN/inf values (fill or interpolate them "
                                   f"when ingesting the session; the legacy maxnorm would have turned the whole output into NaN)")
        x = x.to(torch.float32)
        for i, (op, p) in enumerate(t.ops):
            try:
                x = _apply_op(x, op, p, ctx)
            except (ValueError, RuntimeError, IndexError) as e:
                raise config_error(t.file, f"{key}.ops[{i}]",
                                   f"transform {t.name!r}, op {op!r} failed on session {name!r} "
                                   f"(input shape {tuple(x.shape)}): {e}") from None
        if x.ndim == 0 or x.shape[0] != T:
            raise config_error(t.file, key, f"output has shape {tuple(x.shape)}; the first dim must stay time ({T})")
        if t.concatenate and t.expose_as in outputs:
            prev = outputs[t.expose_as]
            if prev.ndim != x.ndim or prev.shape[:-1] != x.shape[:-1]:
                raise config_error(t.file, f"{key}.concatenate",
                                   f"cannot concatenate shape {tuple(x.shape)} onto {t.expose_as!r} of shape "
                                   f"{tuple(prev.shape)} (all but the last dim must match)")
            x = torch.cat([prev, x.to(prev.dtype) if prev.dtype != x.dtype else x], dim=-1)
        outputs[t.expose_as] = x
    result = {}
    for k, v in outputs.items():
        if v.dtype == torch.bfloat16:
            v = v.to(torch.float32)
        result[k] = v.detach().cpu().numpy()
    return result


@dataclass
class PreparedSession:
    """One session prepared from a legacy dataset config.

    Attributes:
        name: the dataset name (``_dataset_name`` / ``session`` of the config).
        behavior: (T, D) float32 behaviour matrix (the ``behavior`` output of the transforms), or None.
        dfs: (T, len(cids)) uint8 validity mask: the datafilters AND the store's own dfs, restricted
            to the config's units (column ``j`` = ``cids[j]``).
        row_mask: (T,) bool, True on rows whose stimulus type is in ``types`` (all True when the store
            has no ``stim_type`` covariate or the config no ``types``).
        lags: the stimulus lags (``keys_lags.stim``).
        unit_index: (len(cids),) int64 positions of ``cids`` among the store's neurons.
        cids: (len(cids),) int64 cluster ids, in config order.
        keys_lags: the config's ``keys_lags`` plus those declared by transforms/datafilters.
        extra: other transform outputs (expose_as not ``behavior``), full unit set, as computed.
    """

    name: str
    behavior: np.ndarray | None
    dfs: np.ndarray
    row_mask: np.ndarray
    lags: list[int]
    unit_index: np.ndarray
    cids: np.ndarray
    keys_lags: dict = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def behavior_dim(self) -> int:
        return 0 if self.behavior is None else int(self.behavior.shape[1])

    @property
    def n_units(self) -> int:
        return int(len(self.unit_index))


def prepare_session(session: Any, cfg: Mapping) -> PreparedSession:
    """Apply a merged legacy dataset config to a session (see :class:`PreparedSession`).

    ``session`` needs ``robs`` (T, N), ``dfs`` (T, N), ``trial_ids`` (T,), ``neuron_ids`` (N,),
    ``sampling_rate``, ``name`` and optionally ``covariates`` / ``stim_type_names`` / ``behavior``.
    """
    from .datafilters import apply_datafilters, check_sampling, datafilter_keys_lags

    check_sampling(session, cfg)
    lags = stim_lags(cfg)
    unit_index = resolve_unit_index(session, cfg)
    T = len(np.asarray(session.trial_ids))
    row_mask = _row_mask(session, cfg, T)

    outputs = run_transforms(session, cfg, unit_index)
    behavior = outputs.pop("behavior", None)
    if behavior is not None:
        behavior = np.asarray(behavior, dtype=np.float32)
        if behavior.ndim == 1:
            behavior = behavior[:, None]
        if behavior.ndim != 2:
            raise config_error(config_origin(cfg, "transforms"), "transforms",
                               f"the `behavior` output must be (T, D), got shape {behavior.shape}")
        behavior = np.ascontiguousarray(behavior)

    keys_lags = dict(cfg.get("keys_lags") or {})
    for t in _parse_transforms(cfg):
        if t.keys_lags is not None:
            if isinstance(t.keys_lags, Mapping):
                keys_lags.update(t.keys_lags)
            else:
                keys_lags[t.expose_as] = t.keys_lags
    keys_lags.update(datafilter_keys_lags(cfg))
    if "behavior" in keys_lags and behavior is None:
        raise config_error(config_origin(cfg, "keys_lags", "behavior"), "keys_lags.behavior",
                           "asks for `behavior` but no transform has expose_as: behavior")

    mask = apply_datafilters(session, cfg)  # (T, N_store) bool
    store_dfs = np.asarray(session.dfs)
    if store_dfs.ndim == 1:
        store_dfs = store_dfs[:, None]
    mask = np.logical_and(mask, store_dfs != 0)
    dfs = np.ascontiguousarray(mask[:, unit_index].astype(np.uint8))

    return PreparedSession(
        name=str(cfg.get("_dataset_name", cfg.get("session", _session_name(session)))),
        behavior=behavior,
        dfs=dfs,
        row_mask=row_mask,
        lags=lags,
        unit_index=unit_index,
        cids=np.asarray(cfg["cids"], dtype=np.int64),
        keys_lags=keys_lags,
        extra=outputs,
    )

