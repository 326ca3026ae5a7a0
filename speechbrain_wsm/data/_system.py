"""Checks for the Debian packages and programs the corpus builders use."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence

__all__ = [
    "MissingPackageError",
    "require_executable",
    "require_path",
    "run_builder",
]


class MissingPackageError(RuntimeError):
    """A program or file that a Debian package provides is not installed.

    Arguments
    ---------
    package : str
        The Debian package to install.
    what : str
        What was looked for and where.
    pip : bool
        The package comes from PyPI rather than Debian.
    """

    def __init__(self, package: str, what: str, pip: bool = False):
        if pip:
            how = f"install the Python package '{package}' (pip install {package})"
        else:
            how = (
                f"install the Debian package '{package}' (sudo apt-get install -y "
                f"{package}, or bash scripts/install_system_deps.sh)"
            )
        super().__init__(f"{what}; {how}")
        self.package = package


def require_executable(name: str, package: str) -> str:
    """Path of the program ``name``; :class:`MissingPackageError` if absent.

    Arguments
    ---------
    name : str
        Program name, looked up on ``PATH``.
    package : str
        The Debian package that provides it.

    Returns
    -------
    str
        Absolute path of the program.

    Example
    -------
    >>> require_executable("sh", "dash").endswith("sh")
    True
    """
    path = shutil.which(name)
    if path is None:
        raise MissingPackageError(package, f"program '{name}' not found on PATH")
    return path


def require_path(path: str, package: str, what: str) -> str:
    """``path`` if it exists; :class:`MissingPackageError` otherwise.

    Arguments
    ---------
    path : str
        A file or folder the package installs.
    package : str
        The Debian package that provides it.
    what : str
        A short description for the error ("Asterisk prompt transcripts").

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> require_path("/", "base-files", "the root folder")
    '/'
    """
    if not os.path.exists(path):
        raise MissingPackageError(package, f"{what} not found at '{path}'")
    return path


def run_builder(build: Callable[..., dict], shown: Sequence[str], **kwargs) -> int:
    """Run a corpus builder from its command line: log, build, print, exit code.

    Arguments
    ---------
    build : callable
        The builder (``build_synthetic_corpus`` ...), returning a summary dict.
    shown : sequence of str
        Summary keys printed as JSON on success.
    **kwargs
        The builder's arguments.

    Returns
    -------
    int
        0, or 2 (after printing the error) when a package is missing.

    Example
    -------
    >>> run_builder(lambda n: {"n": n, "hidden": 0}, ["n"], n=1)
    {
     "n": 1
    }
    0
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        summary = build(**kwargs)
    except MissingPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in shown if k in summary}, indent=1))
    return 0
