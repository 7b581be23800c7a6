"""``data.test_trials``: the syntax of held-out test trials (applied by :mod:`neurotrain.data.splits`).

A recipe names, per session, the trials to hold out for a final test::

    data:
      test_trials:
        cowley_v4_190923: "600:1200"     # trial ids 600..1199 (quote it: YAML 1.1 reads 10:20 as a number)
        "201025": "600:1200"             # a key may be the part of the session name after its last '_'
        my_session: [3, 17, "40:50"]     # ids and ranges

The named trials leave the training and validation splits and form the test split (``neurotrain evaluate
... --split test``); every trial of any session whose stimulus is byte-identical to a held-out one leaves
training and validation too. This module checks the syntax only (no data needed); which sessions and trials
exist is checked when the data are built (:func:`neurotrain.data.build.assemble`) and, where the session names
are known without loading data, by ``neurotrain validate``.
"""

from __future__ import annotations


class TrialSelectionError(ValueError):
    """A ``data.test_trials`` entry that cannot be applied (bad syntax, or trials the session does not have)."""


def parse_test_trials(spec) -> list[int]:
    """Trial ids named by one ``data.test_trials`` entry, sorted and distinct.

    ``spec`` is ``"start:stop"`` (the trial ids ``start <= id < stop``, as a Python slice of ids), an integer, or
    a list of integers and ``"start:stop"`` strings. Ids are the session's stored trial ids (for the Cowley V4
    importer: the 0-based index of the image file in name order, so images ``image0601..image1200`` are
    ``"600:1200"``). Raises :class:`TrialSelectionError` on anything else, a negative id or an empty range.
    """
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise TrialSelectionError("empty list: name at least one trial (an id or 'start:stop')")
    out: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise TrialSelectionError(f"expected a trial id or 'start:stop', got {item!r}")
        if isinstance(item, int):
            if item < 0:
                raise TrialSelectionError(f"trial ids are >= 0, got {item}")
            out.add(item)
            continue
        if isinstance(item, str) and item.count(":") == 1:
            a, b = (x.strip() for x in item.split(":"))
            try:
                start, stop = int(a), int(b)
            except ValueError:
                raise TrialSelectionError(f"expected 'start:stop' with two integers, got {item!r}") from None
            if start < 0 or stop <= start:
                raise TrialSelectionError(f"expected 0 <= start < stop in 'start:stop', got {item!r}")
            out.update(range(start, stop))
            continue
        raise TrialSelectionError(f"expected a trial id or 'start:stop', got {item!r}")
    return sorted(out)


def check_test_trials(value, file, prefix: str) -> None:
    """ConfigError naming ``<prefix>.<key>`` for a ``data.test_trials`` value that is not a mapping of session
    keys to trial specs with valid syntax."""
    from neurotrain.config.typed import ConfigError

    if not isinstance(value, dict):
        raise ConfigError(file, prefix, f"expected a mapping of session name -> trials, got {type(value).__name__}")
    for key, spec in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)) or str(key) == "":
            raise ConfigError(file, f"{prefix}.{key}", "keys are session names (or the part after the last '_')")
        try:
            parse_test_trials(spec)
        except TrialSelectionError as err:
            raise ConfigError(file, f"{prefix}.{key}", str(err)) from None
