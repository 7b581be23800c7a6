"""Model package: the legacy-compatible multi-session digital twin.

Public API: :func:`build_model`, :class:`MultiSessionModel`, :class:`ModelConfigError`.
"""

from .build import build_model
from .errors import ModelConfigError
from .multisession import MultiSessionModel

__all__ = ["build_model", "MultiSessionModel", "ModelConfigError"]
