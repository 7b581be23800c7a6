"""The monitored metric (``checkpoint.monitor``, ``checkpoint.mode``): what best-k checkpoints and early stopping
rank by.

Every epoch logs, after validation (``neurotrain.training.validation.run_validation``):

==================================== ==================================================================
name                                 when
==================================== ==================================================================
``val_loss``, ``train_loss``         always (the loss of the run's response types)
``val_corr_overall``                 always: mean over sessions of the mean per-neuron correlation
``val_corr/<session>``,              always, one per session
``val_r2/<session>``
``val_bps_overall``                  when a session holds spike counts: mean over those sessions
``val_bps/<session>``                per spike-count session
``val_bps_subject/<subject>``        per subject of the spike-count sessions (pooled over its neurons)
==================================== ==================================================================

``mode`` says whether lower (``min``) or higher (``max``) is better. Left null it is inferred from the name:
a name containing ``loss`` is minimised, bits/spike, correlation and R^2 are maximised.

The recipe check (:meth:`~neurotrain.config.recipe.CheckpointConfig.check`) accepts only names of these
families; once the data are known the run checks the exact name (:func:`check_monitor`), so that a typo
(``val_bps_overal``) or a session that is not in the run stops the run before it trains, with a suggestion,
instead of silently disabling best-k checkpoints and early stopping.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from neurotrain.config.typed import ConfigError

_FAMILIES = re.compile(r"^(val_loss|train_loss|val_(bps|corr)_overall|val_(bps|corr|r2)/.+|val_bps_subject/.+)$")


def is_monitorable(name: str) -> bool:
    """``name`` belongs to a family of metrics that the run logs every epoch (see the module docstring)."""
    return bool(_FAMILIES.match(name))


def infer_mode(name: str) -> str | None:
    """``min`` for losses, ``max`` for bits/spike, correlation and R^2; None when the name says neither."""
    if "loss" in name:
        return "min"
    if any(k in name for k in ("bps", "corr", "r2")):
        return "max"
    return None


def logged_metrics(names: list[str], subjects: list[str], response_types: list[str]) -> list[str]:
    """Every monitorable metric a run over these sessions logs each epoch, in a stable order."""
    out = ["val_loss", "train_loss", "val_corr_overall"]
    counts = [i for i, t in enumerate(response_types) if t == "counts"]
    if counts:
        out.append("val_bps_overall")
        out += [f"val_bps/{names[i]}" for i in counts]
        out += [f"val_bps_subject/{s}" for s in dict.fromkeys(subjects[i] for i in counts)]
    out += [f"val_corr/{n}" for n in names] + [f"val_r2/{n}" for n in names]
    return out


@dataclass(frozen=True)
class Monitor:
    name: str
    mode: str  # "min" or "max"

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is: ``sign * value`` is always 'higher is better'."""
        return 1.0 if self.mode == "max" else -1.0

    def improves(self, value: float, best: float | None, min_delta: float = 0.0) -> bool:
        """``value`` beats ``best`` by more than ``min_delta`` (any value beats None)."""
        if best is None:
            return True
        return value > best + min_delta if self.mode == "max" else value < best - min_delta


def monitor_of(recipe) -> Monitor:
    """The recipe's monitor and its mode (stated, else inferred from the name)."""
    return Monitor(recipe.checkpoint.monitor, recipe.checkpoint.mode or infer_mode(recipe.checkpoint.monitor) or "max")


def check_monitor(recipe, names: list[str], subjects: list[str], response_types: list[str]) -> Monitor:
    """The run's :class:`Monitor`; a name the run will not log is a :class:`ConfigError` naming
    ``checkpoint.monitor``, with the closest logged names."""
    cfg = recipe.checkpoint
    logged = logged_metrics(names, subjects, response_types)
    if cfg.monitor not in logged:
        close = difflib.get_close_matches(cfg.monitor, logged, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        shown = logged if len(logged) <= 12 else logged[:12] + [f"... ({len(logged)} in all)"]
        why = ""
        if cfg.monitor.startswith("val_bps") and "counts" not in response_types:
            why = "; no session of this run holds spike counts, so there are no bits/spike (use val_corr_overall)"
        raise ConfigError(recipe.source, "checkpoint.monitor",
                          f"{cfg.monitor!r} is not logged by this run{hint}{why}; it logs: {', '.join(shown)}")
    return monitor_of(recipe)
