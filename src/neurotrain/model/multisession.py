"""MultiSessionModel: per-session adapters/readouts around a shared core.

``forward(stim, session_idx, behavior=None, history=None)``:

1. core input: ``x = adapters[i](stim)`` ``(B, C, L, H, W)``; for a *modulator-only* model
   (adapter, frontend and convnet all ``none``) the stimulus is ignored and
   ``x = ones(B, c0, 1, 1, 1)`` with ``c0 = 1`` (``v1multi`` / ``v1``, as legacy HEAD) or ``c0 = 0``
   (``v1multi_history``, as legacy's history subclass);
2. ``core_forward``: frontend -> convnet -> modulator (only if one exists and ``behavior`` is not
   None; without behaviour a modulator that changes the channel count is an error) -> recurrent,
   giving ``(B, C_core, T', H', W')``;
3. ``y = readouts[i](core)`` ``(B, N_i)``; history models add ``spike_history[i](history)`` (history
   ``(B, L, N_i)`` flattened lag-major, or already ``(B, L * N_i)``);
4. the output ``activation``; 5. ``+ baseline_activation(baselines[i])`` when baselines are enabled.

No output clamp (the training loop clamps itself). State-dict keys match legacy
``MultiDatasetV1Model`` checkpoints without the Lightning ``model.`` prefix (``adapters.{i}``,
``frontend``, ``convnet``, ``modulator``, ``recurrent``, ``readouts.{i}``, ``baselines.{i}``,
``spike_history.{i}``); for ``ModularV1Model`` (``model_type: v1``) state dicts see
:func:`legacy_v1_state_dict`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class MultiSessionModel(nn.Module):
    """Multi-session digital twin (legacy ``MultiDatasetV1Model`` and its variants).

    Extra attributes: ``model_type``; ``history_lags`` (L of the spike-history input, 0 without
    history encoders); ``lambda_pred`` (weight of the ``pc`` auxiliary loss); ``modulator_only``."""

    def __init__(self, adapters: list[nn.Module], frontend: nn.Module, convnet: nn.Module,
                 modulator: nn.Module | None, recurrent: nn.Module, readouts: list[nn.Module],
                 activation: nn.Module, baselines: list[torch.Tensor] | None = None,
                 baseline_activation: nn.Module | None = None,
                 config: dict | None = None, *, spike_history: nn.ModuleList | None = None,
                 history_lags: int = 0, lambda_pred: float = 0.1, modulator_only: bool = False,
                 core_input_channels: int = 1, model_type: str = "v1multi"):
        super().__init__()
        self.adapters = nn.ModuleList(adapters)
        self.frontend = frontend
        self.convnet = convnet
        self.modulator = modulator
        self.recurrent = recurrent
        self.readouts = nn.ModuleList(readouts)
        self.activation = activation
        if baselines is not None:
            self.baselines = nn.ParameterList([nn.Parameter(b) for b in baselines])
            self.baseline_activation = baseline_activation or nn.Identity()
        else:
            self.baselines = None
            self.baseline_activation = None
        self.spike_history = spike_history
        self.history_lags = int(history_lags) if spike_history is not None else 0
        self.lambda_pred = float(lambda_pred)
        self.modulator_only = bool(modulator_only)
        self.core_input_channels = int(core_input_channels)
        self.model_type = model_type
        self.config = config

    @property
    def n_sessions(self) -> int:
        return len(self.readouts)

    def session_parameters(self, session_idx: int) -> list[nn.Parameter]:
        """The parameters only session ``session_idx`` uses: its adapter, readout, baseline and spike-history
        module (empty parts left out)."""
        parts = [self.adapters[session_idx], self.readouts[session_idx]]
        if self.spike_history is not None:
            parts.append(self.spike_history[session_idx])
        params = [p for m in parts for p in m.parameters()]
        if self.baselines is not None:
            params.append(self.baselines[session_idx])
        return params

    @property
    def session_neurons(self) -> list[int]:
        return [int(r.n_units) for r in self.readouts]

    @property
    def log_input(self) -> bool:
        """True iff the output activation is the identity (the model outputs log-rates)."""
        return isinstance(self.activation, nn.Identity)

    def auxiliary_loss(self) -> torch.Tensor | None:
        """``lambda_pred * mean(err ** 2)`` of the ``pc`` modulator's prediction error from the most
        recent training-mode forward (a 0-d tensor with its graph), or None when the model has no
        such modulator or there was no training-mode forward since the last call. The stored error
        is cleared, so each forward is counted at most once."""
        pop = getattr(self.modulator, "pop_prediction_error", None)
        if pop is None:
            return None
        err = pop()
        if err is None:
            return None
        return self.lambda_pred * err.pow(2).mean()

    def core_input(self, stim: torch.Tensor | None, session_idx: int,
                   behavior: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor entering the frontend: ``adapters[i](stim)`` ``(B, C, L, H, W)``, or for a
        modulator-only model ``ones(B, core_input_channels, 1, 1, 1)`` (the stimulus is ignored)."""
        if self.modulator_only:
            if behavior is None:
                raise ValueError("this modulator-only model (adapter, frontend and convnet 'none') "
                                 "needs the behaviour input")
            return behavior.new_ones(behavior.shape[0], self.core_input_channels, 1, 1, 1)
        if stim is None:
            raise ValueError("this model needs a stimulus (only modulator-only models, with "
                             "adapter, frontend and convnet 'none', run without one)")
        x = self.adapters[session_idx](stim)
        return stim if x is None else x  # adapter 'none' passes the stimulus through

    def core_forward(self, x: torch.Tensor, behavior: torch.Tensor | None = None) -> torch.Tensor:
        """Shared core: ``(B, C, L, H, W)`` -> ``(B, C_core, T', H', W')``."""
        x = self.frontend(x)
        x = self.convnet(x)
        if self.modulator is not None:
            if behavior is not None:
                x = self.modulator(x, behavior)
            elif self.modulator.output_channels != x.shape[1]:
                # legacy skipped the modulator and then crashed on the channel count downstream
                raise ValueError(f"this model's {type(self.modulator).__name__} turns {x.shape[1]} "
                                 f"feature channels into {self.modulator.output_channels}: "
                                 "it needs the behaviour input")
        return self.recurrent(x)

    def history_term(self, history: torch.Tensor | None, session_idx: int,
                     batch: int) -> torch.Tensor:
        """``spike_history[i](history)`` ``(B, N_i)`` for history ``(B, L, N_i)`` or ``(B, L*N_i)``."""
        n = self.session_neurons[session_idx]
        if history is None:
            raise ValueError(f"this spike-history model (model_type v1multi_history) needs "
                             f"history=(B, {self.history_lags}, {n}): the previous "
                             f"{self.history_lags} spike counts of session {session_idx}")
        if history.ndim == 3:
            if tuple(history.shape[1:]) != (self.history_lags, n):
                raise ValueError(f"history: expected (B, {self.history_lags}, {n}) for session "
                                 f"{session_idx}, got {tuple(history.shape)}")
            history = history.reshape(history.shape[0], self.history_lags * n)
        elif history.ndim != 2 or history.shape[1] != self.history_lags * n:
            raise ValueError(f"history: expected (B, {self.history_lags}, {n}) or "
                             f"(B, {self.history_lags * n}), got {tuple(history.shape)}")
        if history.shape[0] != batch:
            raise ValueError(f"history: batch {history.shape[0]} != model batch {batch}")
        return self.spike_history[session_idx](history)

    def forward(self, stim: torch.Tensor | None, session_idx: int,
                behavior: torch.Tensor | None = None,
                history: torch.Tensor | None = None,
                readout_shift: torch.Tensor | None = None) -> torch.Tensor:
        """Rates (after the output activation) ``(B, N_i)`` for session ``session_idx``.

        ``stim`` ``(B, C, L, H, W)`` with lag index 0 = newest frame (ignored, may be None, for
        modulator-only models); ``behavior`` ``(B, D)``; ``history`` ``(B, history_lags, N_i)``
        (required by history models, ignored otherwise); ``readout_shift`` ``(B, 2)``: how far each sample's
        stimulus was translated, in pixels of the core output (rows, columns), for the readout to follow
        (training augmentation, :mod:`neurotrain.training.augment`; readouts with ``supports_shift`` only)."""
        x = self.core_forward(self.core_input(stim, session_idx, behavior), behavior)
        readout = self.readouts[session_idx]
        if readout_shift is None:
            y = readout(x)
        elif getattr(readout, "supports_shift", False):
            y = readout(x, shift=readout_shift)
        else:
            raise ValueError(f"readout {session_idx} ({type(readout).__name__}) cannot follow stimulus translations "
                             "(readout_shift); train it without data.augment")
        if self.spike_history is not None:
            y = y + self.history_term(history, session_idx, y.shape[0]).to(y.dtype)
        y = self.activation(y)
        if self.baselines is not None:
            y = y + self.baseline_activation(self.baselines[session_idx])
        return y


    def shift_to_core(self, session_idx: int, shift_px: torch.Tensor, stim_hw: tuple[int, int],
                      core_stride: tuple[float, float]) -> torch.Tensor:
        """A translation ``shift_px`` ``(B, 2)`` (rows, columns) of the stimulus, in stimulus pixels, as pixels of
        the core output: through session ``session_idx``'s adapter (its current zoom, without gradient), then
        divided by the core's ``core_stride`` (stimulus pixels per output pixel after the adapter, see
        :func:`neurotrain.model.shapes.core_stride`)."""
        adapter = self.adapters[session_idx]
        to_grid = getattr(adapter, "shift_to_output", None)
        d = shift_px.float() if to_grid is None else to_grid(shift_px.float(), stim_hw)
        return d / torch.tensor(core_stride, dtype=d.dtype, device=d.device)

    def select_sessions(self, indices: list[int]) -> "MultiSessionModel":
        """A view of this model with only sessions ``indices`` (in that order), sharing every module and
        parameter: training the view trains this model. Used to fit some sessions of a larger model."""
        view = copy.copy(self)
        view._modules = dict(self._modules)
        view._parameters = dict(self._parameters)
        view._buffers = dict(self._buffers)
        view._modules["adapters"] = nn.ModuleList([self.adapters[i] for i in indices])
        view._modules["readouts"] = nn.ModuleList([self.readouts[i] for i in indices])
        if self.spike_history is not None:
            view._modules["spike_history"] = nn.ModuleList([self.spike_history[i] for i in indices])
        if self.baselines is not None:
            view._modules["baselines"] = nn.ParameterList([self.baselines[i] for i in indices])
        return view


def legacy_v1_state_dict(state_dict: dict, prefix: str = "") -> dict:
    """Rename a legacy ``ModularV1Model`` (``model_type: v1``) state dict to this model's keys.

    ``adapter.*`` -> ``adapters.0.*``, ``readout.*`` -> ``readouts.0.*``, ``baseline`` ->
    ``baselines.0``; ``frontend``/``convnet``/``modulator``/``recurrent`` keys are unchanged.
    ``prefix`` (e.g. ``"model."`` for a Lightning checkpoint) is stripped from the keys that carry
    it; keys without it are dropped. Values are not copied."""
    out = {}
    for key, value in state_dict.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        if key.startswith("adapter."):
            key = "adapters.0." + key[len("adapter."):]
        elif key.startswith("readout."):
            key = "readouts.0." + key[len("readout."):]
        elif key == "baseline":
            key = "baselines.0"
        out[key] = value
    return out
