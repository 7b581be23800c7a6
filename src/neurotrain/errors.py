"""One error family for everything a user can get wrong: a recipe, a model YAML, a data file, a checkpoint.

Every error neurotrain raises on bad input is a :class:`NeurotrainError` carrying where the problem is
(``source``: a file, folder or argument), which entry (``key``: a dotted recipe or YAML key, a tensor name, a
flag) and what is wrong (``message``). ``str(err)`` is ``"<source>: <key>: <message>"`` with the parts that are
known. The command line catches :class:`NeurotrainError` once and exits with code 2 after one line.

The subclasses say which layer found the problem; they keep ``ValueError`` as a base so ``except ValueError``
still works:

========================= =================================================================================
:class:`ConfigError`      a recipe or config value (``source`` = the YAML file, ``key`` = the dotted key)
:class:`ModelConfigError` a model YAML entry (raised with ``key`` only; :meth:`NeurotrainError.at` adds the
                          file once it is known)
:class:`DataError`        a recording, a session folder or an importer's input
:class:`CheckpointError`  a model folder, a state folder or a legacy checkpoint
========================= =================================================================================
"""

from __future__ import annotations

from pathlib import Path


class NeurotrainError(ValueError):
    """Bad input, located: ``source`` (file, folder, argument), ``key`` (entry inside it), ``message``."""

    def __init__(self, source: str | Path | None = None, key: str | None = None, message: str = ""):
        self.source = None if source is None else str(source)
        self.key = key
        self.message = message
        super().__init__(self._text())

    def _text(self) -> str:
        return ": ".join(str(p) for p in (self.source, self.key, self.message) if p not in (None, ""))

    def __str__(self) -> str:
        return self._text()

    def at(self, source: str | Path) -> "NeurotrainError":
        """The same error located in ``source`` (a file found out later, e.g. the model YAML's path)."""
        self.source = str(source)
        self.args = (self._text(),)
        return self


class ConfigError(NeurotrainError):
    """A recipe or model config is wrong. The message names the file and the dotted key."""

    def __init__(self, file: str | Path | None, key: str, message: str):
        super().__init__("<recipe>" if file is None else file, key, message)

    @property
    def file(self) -> str:
        return self.source


class ModelConfigError(NeurotrainError):
    """A model YAML entry is invalid: ``key`` is its dotted path (``convnet.params.channels``)."""

    def __init__(self, key: str, message: str = ""):
        super().__init__(None, key, message)

    def in_file(self, model_yaml: str | Path) -> "ConfigError":
        """This error as a :class:`ConfigError` naming the model YAML file it was found in."""
        return ConfigError(model_yaml, self.key or "model", self.message)


class DataError(NeurotrainError):
    """A recording, session folder or importer input is missing or invalid (``source`` names it)."""

    def __init__(self, message: str, *, source: str | Path | None = None, key: str | None = None):
        super().__init__(source, key, message)


class CheckpointError(NeurotrainError):
    """A model folder, resumable state or legacy checkpoint cannot be read as asked."""

    def __init__(self, source: str | Path | None, key: str | None = None, message: str = ""):
        super().__init__(source, key, message)
