"""Per-session spike-history encoders of ``model_type: v1multi_history`` models.

Session i gets an :class:`~neurotrain.model.mlp.MLP` ``spike_history.{i}`` mapping its own recent
spike counts ``(B, num_lags, N_i)``, flattened lag-major to ``(B, num_lags * N_i)`` (entry
``l * N_i + n`` = lag l of neuron n), to ``(B, N_i)``. The model adds that to the readout output
before the output activation.

``history_encoder`` YAML block: ``type: mlp`` and ``params``:

* ``num_lags`` (5): history length L;
* ``hidden_dims`` (required when the block is given): the MLP hidden widths;
* ``act_type`` (relu), ``bias`` (True), ``dropout`` (0; hidden blocks only), ``norm_type`` (none;
  ``batch`` / ``layer`` / ``rms`` / ``group``), ``norm_params``, ``act_params``;
* ``residual`` (False; only acts when ``L * N == N``, i.e. L = 1);
* ``output_activation`` (False): the last layer is then Linear -> norm -> act;
* ``spectral_norm`` (False): classic ``torch.nn.utils.spectral_norm`` on every Linear (keys
  ``weight_orig``, ``weight_u``, ``weight_v``).

Without a ``history_encoder`` block the legacy default applies: L = 5, hidden [32, 10], relu, no
spectral norm.
"""

from __future__ import annotations

import torch.nn as nn

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .mlp import MLP

DEFAULT_HISTORY = {"type": "mlp", "params": {"num_lags": 5, "hidden_dims": [32, 10],
                                             "act_type": "relu", "spectral_norm": False}}
_HISTORY_KEYS = ("num_lags", "hidden_dims", "act_type", "spectral_norm", "bias", "dropout",
                 "output_activation", "norm_type", "norm_params", "act_params", "residual")
# legacy overwrote these with num_lags * N and N
_HISTORY_IGNORED = ("input_dim", "output_dim")


def build_spike_history(block: dict | None, n_neurons: list[int],
                        path: str = "model.history_encoder") -> tuple[nn.ModuleList, int]:
    """``(ModuleList of per-session MLPs, num_lags)`` for sessions with ``n_neurons[i]`` neurons."""
    if block is None:
        block = DEFAULT_HISTORY
    if not isinstance(block, dict):
        raise ModelConfigError(f"{path}", f"expected a mapping with 'type' and 'params'")
    check_keys(block, ("type", "params"), path)
    htype = block.get("type", "mlp")
    if str(htype).lower() != "mlp":
        raise unknown_type(f"{path}.type", htype, ("mlp",))
    params = block.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ModelConfigError(f"{path}.params", f"expected a mapping or null")
    ppath = f"{path}.params"
    p = check_keys(params, _HISTORY_KEYS, ppath, _HISTORY_IGNORED)
    num_lags = int(p.pop("num_lags", 5))
    if num_lags < 1:
        raise ModelConfigError(f"{ppath}.num_lags", f"must be >= 1, got {num_lags}")
    if "hidden_dims" not in p:
        raise ModelConfigError(f"{ppath}.hidden_dims", f"required (legacy's MLP has no default)")
    if not isinstance(p["hidden_dims"], (list, tuple)):
        raise ModelConfigError(f"{ppath}.hidden_dims", f"expected a list of ints")
    mlps = nn.ModuleList(MLP(num_lags * int(n), output_dim=int(n), path=ppath, **p)
                         for n in n_neurons)
    return mlps, num_lags
