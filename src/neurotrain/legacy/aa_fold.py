"""Anti-aliasing of VisionCore's refactor-era conv layers, folded into effective weights.

The legacy code windowed a conv's kernel on every forward; the converter loads such a conv as a plain
conv holding the kernel the legacy forward used (:func:`fold_aa_weight`). All functions take a weight
``[C_out, C_in, k...]`` (kernel axes 2..) and return a new tensor of the same shape and dtype.

* :func:`mixin_window` - ``aa_signal`` (``aa_time`` before 199e0d5): a separable window, each kernel
  axis of size n multiplied by ``torch.signal.windows.<aa_window>(n, **aa_window_kwargs)`` divided by
  its maximum; from 2521dd0 axes of size <= 3 are left alone.
* :func:`freq_fold` - ``aa_freq`` (working only in VisionCore 32efae1..e7fb06f^: before 32efae1 it
  called ``numpy.fft.next_fast_len``, which does not exist, and from e7fb06f the option is gone):
  every kernel axis of size k is zero-padded to ``N = 2**ceil(log2(k * aa_fft_pad))``; the N-point
  FFT over the kernel axes is ``fftshift``-ed, multiplied by the separable window of length N on each
  axis (max-normalised, as above), ``ifftshift``-ed and inverted; the real part is cropped back to k
  starting at ``(N - k) // 2`` on each axis; with ``aa_signal`` and ``aa_double_time`` the window of
  :func:`mixin_window` is applied again. From 2521dd0 axes of size <= 3 get no window (and a kernel
  with no axis > 3 is left alone). The window is applied *after* ``aa_signal``'s.
* :func:`frontend_conv1d_aa` - the anti-aliased Conv1d temporal frontend of d1ba5cd..8d81a39^.
"""

from __future__ import annotations

import math

import torch

__all__ = ["mixin_window", "freq_fold", "fold_aa_weight", "frontend_conv1d_aa", "sym_hann"]


def _window(name: str, n: int, kwargs: dict | None) -> torch.Tensor:
    fn = getattr(torch.signal.windows, str(name), None) if not str(name).startswith("_") else None
    if fn is None or not callable(fn):
        raise ValueError(f"unknown aa_window {name!r}")
    w = fn(n, **(kwargs or {})).to(torch.float32)
    return w / w.max().clamp_min(1e-8)


def mixin_window(weight: torch.Tensor, window: str, kwargs: dict | None, skip_small: bool) -> torch.Tensor:
    """Separable window over the kernel axes (axes 2..) of the refactor-era conv layers: an axis of
    size n gets ``torch.signal.windows.<window>(n, **kwargs)`` divided by its maximum; with
    ``skip_small`` (code of 2521dd0..e7fb06f^) axes of size <= 3 are left alone."""
    out = weight.to(torch.float32)
    for ax in range(2, weight.ndim):
        n = weight.shape[ax]
        if skip_small and n <= 3:
            continue
        shape = [1] * weight.ndim
        shape[ax] = n
        out = out * _window(window, n, kwargs).view(shape)
    return out.to(weight.dtype)


def sym_hann(n: int) -> torch.Tensor:
    if n == 1:
        return torch.ones(1)
    k = torch.arange(n, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2.0 * math.pi * k / (n - 1))).to(torch.float32)


def frontend_conv1d_aa(weight: torch.Tensor, version: str) -> torch.Tensor:
    """Effective kernel ``[C, 1, K]`` of the anti-aliased Conv1d temporal frontend (before 8d81a39).

    ``v1`` (d1ba5cd..90907ab^): symmetric Hann window h, zero-padded FFT of length
    ``2**ceil(log2(2K))``, raised-cosine low-pass (pass <= 0.45, stop >= 0.5 cycles/sample), inverse
    FFT cropped to K, window h again. ``v2`` (90907ab..e4e1380^): the window h only."""
    k = weight.shape[-1]
    h = sym_hann(k).view(1, 1, k)
    w = weight.to(torch.float32) * h
    if version == "v2":
        return w.to(weight.dtype)
    nfft = int(1 << int(math.ceil(math.log2(max(1, 2 * k)))))
    freqs = torch.fft.rfftfreq(nfft, d=1.0)
    cutoff, trans = 0.45, 0.05
    mask = torch.where(freqs <= cutoff, torch.ones_like(freqs), torch.zeros_like(freqs))
    band = (freqs > cutoff) & (freqs < cutoff + trans)
    mask[band] = 0.5 * (1 + torch.cos(math.pi * (freqs[band] - cutoff) / trans))
    spec = torch.fft.rfft(w, n=nfft, dim=-1) * mask.view(1, 1, -1)
    w = torch.fft.irfft(spec, n=nfft, dim=-1)[..., :k] * h
    return w.to(weight.dtype)


def freq_fold(weight: torch.Tensor, window: str, kwargs: dict | None, fft_pad: int, skip_small: bool) -> torch.Tensor:
    """The ``aa_freq`` low-pass of the kernel (module docstring), without the ``aa_double_time`` pass."""
    axes = tuple(range(2, weight.ndim))
    kshape = [weight.shape[a] for a in axes]
    if skip_small and not any(k > 3 for k in kshape):
        return weight.clone()
    w = weight.to(torch.float32)
    sizes = [int(2 ** math.ceil(math.log2(k * fft_pad))) for k in kshape]
    spec = torch.fft.fftshift(torch.fft.fftn(w, s=sizes, dim=axes), dim=axes)
    for ax, n, k in zip(axes, sizes, kshape):
        if skip_small and k <= 3:
            continue
        shape = [1] * w.ndim
        shape[ax] = n
        spec = spec * _window(window, n, kwargs).view(shape)
    out = torch.fft.ifftn(torch.fft.ifftshift(spec, dim=axes), s=sizes, dim=axes).real
    index = [slice(None), slice(None)] + [slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(sizes, kshape)]
    return out[tuple(index)].contiguous().to(weight.dtype)


def fold_aa_weight(weight: torch.Tensor, *, signal: bool, freq: bool, window: str = "hann",
                   kwargs: dict | None = None, fft_pad: int = 2, double_time: bool = False,
                   skip_small: bool = False) -> torch.Tensor:
    """The kernel a refactor-era conv with ``aa_signal`` (``signal``) and/or ``aa_freq`` (``freq``)
    used in its forward (module docstring)."""
    w = weight
    if signal:
        w = mixin_window(w, window, kwargs, skip_small)
    if freq:
        kshape = weight.shape[2:]
        if not (skip_small and not any(k > 3 for k in kshape)):
            w = freq_fold(w, window, kwargs, fft_pad, skip_small)
        if signal and double_time:
            w = mixin_window(w, window, kwargs, skip_small)
    return w
