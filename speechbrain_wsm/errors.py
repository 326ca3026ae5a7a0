"""User errors: a mistake in what the user gave ends in one ``error:`` line.

A recipe's ``train.py``, ``evaluate``, ``transcribe`` and the other command
lines install :func:`install_error_hook` (``load_hparams`` does it for every
recipe). An uncaught :class:`UserError` (a wrong option value, a missing or
unreadable file or folder, an unknown ``ssl_source``, a damaged
``config.json`` ...) is then printed as one line, ``error: <message>``, and
the process exits with status 1. Any other exception is a bug of the project
and keeps its traceback. ``--debug`` on the command line (or
``SPEECHBRAIN_WSM_TRACEBACK=1`` in the environment) shows the traceback of a
user error too.

The classes also derive from the built-in exception a caller would expect
(``ValueError``, ``FileNotFoundError``), so ``except ValueError`` still
catches them.

Example
-------
>>> try:
...     raise UserValueError("--beam_size=0: the beam must hold at least 1 prefix")
... except ValueError as e:
...     print(f"error: {e}")
error: --beam_size=0: the beam must hold at least 1 prefix
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "ConfigError",
    "UserError",
    "UserFileNotFoundError",
    "UserValueError",
    "install_error_hook",
    "user_error_hook",
    "traceback_wanted",
]


class UserError(Exception):
    """A mistake in what the user gave: printed as one ``error:`` line."""


class UserValueError(UserError, ValueError):
    """A wrong option value, manifest row or file content (a ``ValueError``)."""


class ConfigError(UserValueError):
    """A mistake in a recipe's configuration; its message names the key and the fix.

    Raised by :func:`speechbrain_wsm.recipe.experiment.load_hparams` and the
    checks of command-line options (decoder files, output folders); printed
    as one ``error: ...`` line like every :class:`UserError`.
    """


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (a ``FileNotFoundError``)."""

    def __str__(self) -> str:  # the message as given, not "[Errno ...]"
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


def traceback_wanted(argv: list[str] | None = None) -> bool:
    """Whether user errors show their traceback (``--debug`` or the variable)."""
    argv = sys.argv if argv is None else argv
    flag = os.environ.get("SPEECHBRAIN_WSM_TRACEBACK", "")
    return flag not in ("", "0") or any(
        a == "--debug" or a.startswith("--debug=") for a in argv[1:]
    )


def install_error_hook() -> None:
    """Print an uncaught :class:`UserError` as one ``error:`` line (installed once).

    The process then exits with status 1, as after any uncaught exception.
    """
    if not getattr(sys.excepthook, "_user_errors", False):
        sys.excepthook = user_error_hook(sys.excepthook)


def user_error_hook(previous):
    """An exception hook that prints a :class:`UserError` as one ``error:`` line
    and hands every other exception (or ``--debug``) to ``previous``."""

    def hook(kind, value, tb):
        if isinstance(value, UserError) and not traceback_wanted():
            print(f"error: {value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    hook._user_errors = True
    return hook
