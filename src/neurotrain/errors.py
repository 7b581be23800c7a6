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
:class:`SaveError`        a save that the file system refused (full disk, quota): not bad input, so the command
                          line exits with :attr:`SaveError.exit_code` (74) instead of 2
========================= =================================================================================

``exit_code`` is the command line's exit status for the error (2 unless a subclass says otherwise).
"""

from __future__ import annotations

from pathlib import Path


class NeurotrainError(ValueError):
    """Bad input, located: ``source`` (file, folder, argument), ``key`` (entry inside it), ``message``."""

    #: the exit status of ``neurotrain`` when this error ends a command
    exit_code = 2

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


class SaveError(NeurotrainError):
    """A save failed (the file system refused it: ENOSPC, EDQUOT, any other write error) and the run stopped.

    ``source`` is the folder or file that could not be written, ``key`` what it was (``resumable state``,
    ``model folder``, ``resolved recipe``, ``metrics log``), ``message`` the reason, the free space, the size the
    save needed, what was kept and the command that resumes. Raised on every rank of a run at the same point;
    ``quiet`` is true on the ranks that should not print it (all but the main process)."""

    exit_code = 74  # EX_IOERR (sysexits.h): an input/output error, distinct from bad input (2)

    def __init__(self, source: str | Path | None, key: str | None = None, message: str = "", *, quiet: bool = False):
        super().__init__(source, key, message)
        self.quiet = quiet
