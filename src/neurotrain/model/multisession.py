"""MultiSessionModel: per-session adapters/readouts around a shared core.

``forward(stim, session_idx, behavior=None, history=None)``:

1. ``x = adapters[i](stim)``: ``(B, C, L, H, W)`` -> ``(B, C, L, g, g)`` (``None`` for adapter
   ``none``, in which case ``x = ones(B, 1, 1, 1, 1)``);
2. ``core_forward``: frontend -> convnet -> modulator (only if one exists and ``behavior`` is not
   None) -> recurrent, giving ``(B, C_core, T', H', W')``;
3. ``readouts[i]`` -> ``(B, N_i)``; 4. output ``activation``; 5. ``+ baseline_activation(baselines[i])``
   when baselines are enabled.

No output clamp (the training loop clamps itself). State-dict keys match legacy checkpoints without
the Lightning ``model.`` prefix.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class MultiSessionModel(nn.Module):
    """Multi-session digital twin (legacy ``MultiDatasetV1Model``)."""

    def __init__(self, adapters: list[nn.Module], frontend: nn.Module, convnet: nn.Module,
                 modulator: nn.Module | None, recurrent: nn.Module, readouts: list[nn.Module],
                 activation: nn.Module, baselines: list[float] | None = None,
                 baseline_activation: nn.Module | None = None,
                 config: dict | None = None):
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
        self.config = config

    @property
    def n_sessions(self) -> int:
        return len(self.readouts)

    @property
    def session_neurons(self) -> list[int]:
        return [int(r.n_units) for r in self.readouts]

    @property
    def log_input(self) -> bool:
        """True iff the output activation is the identity (the model outputs log-rates)."""
        return isinstance(self.activation, nn.Identity)

    def core_forward(self, x: torch.Tensor, behavior: torch.Tensor | None = None) -> torch.Tensor:
        """Shared core: ``(B, C, L, H, W)`` -> ``(B, C_core, T', H', W')``."""
        x = self.frontend(x)
        x = self.convnet(x)
        if self.modulator is not None and behavior is not None:
            x = self.modulator(x, behavior)
        return self.recurrent(x)

    def forward(self, stim: torch.Tensor | None, session_idx: int,
                behavior: torch.Tensor | None = None,
                history: torch.Tensor | None = None) -> torch.Tensor:
        """Rates (after the output activation) ``(B, N_i)`` for session ``session_idx``.

        ``stim`` ``(B, C, L, H, W)`` with lag index 0 = newest frame; ``behavior`` ``(B, D)``;
        ``history`` is accepted for API compatibility and unused (no spike-history models)."""
        del history
        x = self.adapters[session_idx](stim) if stim is not None else None
        if x is None:
            ref = stim if stim is not None else behavior
            if ref is None:
                raise ValueError("need a stimulus or behaviour to infer the batch size")
            x = ref.new_ones(ref.shape[0], 1, 1, 1, 1)
        x = self.core_forward(x, behavior)
        y = self.activation(self.readouts[session_idx](x))
        if self.baselines is not None:
            y = y + self.baseline_activation(self.baselines[session_idx])
        return y
