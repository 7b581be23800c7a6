"""Stopping cleanly when the cluster asks: SIGTERM and SIGUSR1 (what SLURM sends before a time limit or a
preemption, with ``--signal``)."""

from __future__ import annotations

import signal
import threading

import torch


class Preemption:
    """The handler only records the signal; after every optimizer step all ranks agree (a max-reduce of the
    flag, so a signal seen by any rank stops every rank at the same step), save a resumable state and return.
    Handlers are installed only in the main thread and restored at the end (:meth:`restore`).
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")
    #: On N > 1 ranks the flag is all-reduced (a collective and a host sync) only every this many optimizer steps;
    #: a signal is therefore acted on within that many steps (SLURM warns 120 s ahead).
    EVERY_N_STEPS = 10

    def __init__(self):
        self.signal: int | None = None
        self.fault = False  # set by agreed(): some rank holds a failed save that stops the run
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    @property
    def name(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name

    def agreed(self, accelerator, step: int, fault: bool = False) -> bool:
        """True on every rank once any rank has seen a signal, checked at optimizer ``step`` (a collective on
        every ``EVERY_N_STEPS``-th step: call it on every rank). ``fault``: this rank holds a failed save that must
        stop the run (:attr:`SaveGuard.must_stop <neurotrain.training.save_guard.SaveGuard.must_stop>`); agreed in
        the same all-reduce, the answer is :attr:`fault` (the same on every rank)."""
        if accelerator.num_processes == 1:
            self.fault = bool(fault)
            return self.signal is not None
        if step % self.EVERY_N_STEPS:
            return False
        flag = torch.tensor([0 if self.signal is None else int(self.signal), int(bool(fault))], device=accelerator.device)
        seen, self.fault = (int(v) for v in accelerator.reduce(flag, "max").tolist())
        self.fault = bool(self.fault)
        if seen and self.signal is None:
            self.signal = seen
        return bool(seen)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
