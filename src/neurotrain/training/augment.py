"""Random translations of the training stimuli that the readouts follow (``data.augment``,
:mod:`neurotrain.config.augment`).

For every training sub-batch (one session's samples of one micro-batch) each sample ``b`` gets a shift ``d_b =
(dy, dx)`` of whole stimulus pixels, uniform in ``-translate_px .. translate_px``. The stimulus moves by ``d_b``
(``out[y, x] = stim[y - dy, x - dx]``; the uncovered border is mid-grey or the edge pixel) and the readout moves
with it: ``d_b`` is mapped through the session's adapter (its current zoom) and divided by the core's stride
(:func:`neurotrain.model.shapes.core_stride`, measured once per session and frame size), and the model runs with
``readout_shift`` = that shift in pixels of the core output (:meth:`MultiSessionModel.forward`). For a
translation-equivariant core and a shift that is a multiple of the stride, the prediction for the translated
stimulus equals the prediction for the original one, up to the border.

Draws: ``numpy.random.default_rng([seed, epoch, global batch, sub-batch])`` with the global batch index
``batches_in_epoch * world + rank`` (rank r takes batches r, r + N, ...), so they depend on nothing else: a resumed
run, or a run on another number of processes, translates every batch exactly as the uninterrupted run did.
Only the training loop applies them; validation, evaluation and predictions see the stimuli as they are.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from neurotrain.errors import ConfigError
from neurotrain.model.shapes import core_stride

Transform = Callable[[torch.Tensor, int, int], tuple[torch.Tensor, "torch.Tensor | None"]]


def translate(stim: torch.Tensor, shifts: torch.Tensor, pad: str = "grey") -> torch.Tensor:
    """``stim`` ``(B, C, L, H, W)`` with sample b moved by ``shifts[b]`` = (dy, dx) whole pixels (content at
    ``(y, x)`` goes to ``(y + dy, x + dx)``); the uncovered border is 0 (``grey``: mid-grey of a normalised
    stimulus) or the nearest edge pixel (``edge``). A new tensor of the same shape."""
    b, _, _, h, w = stim.shape
    shifts = shifts.to(device=stim.device, dtype=torch.long)
    t = int(shifts.abs().max()) if shifts.numel() else 0
    if t == 0:
        return stim.clone()
    if pad == "edge":
        padded = F.pad(stim, (t, t, t, t, 0, 0), mode="replicate")
    else:
        padded = F.pad(stim, (t, t, t, t), mode="constant", value=0.0)
    rows = torch.arange(h, device=stim.device).view(1, h) - shifts[:, :1] + t  # (B, H)
    cols = torch.arange(w, device=stim.device).view(1, w) - shifts[:, 1:] + t  # (B, W)
    idx = torch.arange(b, device=stim.device).view(b, 1, 1)
    out = padded[idx, :, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C, L)
    return out.permute(0, 3, 4, 1, 2).contiguous()


class Translations:
    """The translations of one run: ``draw`` the shifts of a sub-batch, ``for_batch`` the transform the loss
    applies to each of a micro-batch's sub-batches. ``model`` is the unwrapped model (its adapters and core give
    the readout shift); ``source``: the recipe file, for errors."""

    def __init__(self, model, max_px: int, pad: str = "grey", seed: int = 0, source=None):
        self.model, self.max_px, self.pad, self.seed = model, int(max_px), pad, int(seed)
        self._strides: dict[tuple, tuple[float, float]] = {}
        if getattr(model, "modulator_only", False):
            raise ConfigError(source, "data.augment.translate_px", "the model ignores the stimulus (adapter, "
                              "frontend and convnet are 'none'): there is nothing to translate")
        for i, r in enumerate(model.readouts):
            if not getattr(r, "supports_shift", False):
                raise ConfigError(source, "data.augment.translate_px", f"readout {i} ({type(r).__name__}) cannot "
                                  "follow stimulus translations; use a gaussian, factorized or linear readout, or "
                                  "no augmentation")

    def draw(self, epoch: int, batch: int, sub_index: int, n: int) -> np.ndarray:
        """``(n, 2)`` int64 shifts (dy, dx) of sub-batch ``sub_index`` of global batch ``batch`` of ``epoch``."""
        rng = np.random.default_rng([self.seed, int(epoch), int(batch), int(sub_index)])
        return rng.integers(-self.max_px, self.max_px + 1, size=(n, 2))

    def stride(self, session_idx: int, stim_shape: tuple) -> tuple[float, float]:
        key = (int(session_idx),) + tuple(int(v) for v in stim_shape)
        if key not in self._strides:
            self._strides[key] = core_stride(self.model, session_idx, stim_shape)
        return self._strides[key]

    def apply(self, stim: torch.Tensor, session_idx: int, shifts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The translated ``stim`` and the readout shift ``(B, 2)`` in core-output pixels."""
        d = torch.as_tensor(shifts)
        moved = translate(stim, d, self.pad)
        stride = self.stride(session_idx, tuple(stim.shape[1:]))
        readout_shift = self.model.shift_to_core(session_idx, d.to(torch.float32), tuple(stim.shape[-2:]), stride)
        return moved, readout_shift.to(stim.device)

    def for_batch(self, epoch: int, batch: int) -> Transform:
        def transform(stim: torch.Tensor, session_idx: int, sub_index: int):
            return self.apply(stim, session_idx, self.draw(epoch, batch, sub_index, stim.shape[0]))
        return transform


def batch_transform(ctx, epoch: int, batch_in_epoch: int) -> Transform | None:
    """The transform of this rank's micro-batch ``batch_in_epoch`` of ``epoch`` in the run ``ctx``
    (a :class:`~neurotrain.training.context.RunContext`), or None without ``data.augment``. The
    :class:`Translations` object is built on first use and kept on the context."""
    cfg = ctx.recipe.data.augment
    if not cfg.enabled:
        return None
    aug = getattr(ctx, "_translations", None)
    if aug is None:
        aug = Translations(ctx.raw, cfg.translate_px, cfg.pad, ctx.recipe.seed, ctx.recipe.source)
        ctx._translations = aug
    acc = ctx.accelerator
    return aug.for_batch(epoch, batch_in_epoch * acc.num_processes + acc.process_index)
