"""The errors that mean "the user's input was wrong", as opposed to a bug in omnifuse.

Every user-input error derives from `OmnifuseInputError`: bad media, bad dataset records, bad
recipes, bad model folders, placeholder/feature mismatches, bad command-line values. The CLI turns
exactly these into a one-line message and exit code 2 (the server into a 4xx); anything else is a bug
and keeps its traceback.

They subclass ValueError, so code that caught ValueError before keeps working.

Example:
    >>> try:
    ...     raise FolderError("runs/x is not an omnifuse model folder")
    ... except OmnifuseInputError as err:
    ...     print(f"omnifuse eval: {err}")
    omnifuse eval: runs/x is not an omnifuse model folder
"""

from __future__ import annotations


class OmnifuseInputError(ValueError):
    """Base of every error caused by the user's input; `str(err)` is the one-line reason."""


class UsageError(OmnifuseInputError):
    """A bad command-line or API argument (a negative batch size, an unknown format, ...)."""


class FolderError(OmnifuseInputError):
    """A model folder that is missing, incomplete, or not an omnifuse folder (with what to do instead)."""


class ModalityError(OmnifuseInputError):
    """A modality spec, part or batch key that does not fit the model (unknown name, bad kind, count mismatch)."""


class OutputPathError(OmnifuseInputError):
    """An output folder omnifuse refuses to write into (it would overwrite or escape what it should not)."""


__all__ = ["FolderError", "ModalityError", "OmnifuseInputError", "OutputPathError", "UsageError"]
