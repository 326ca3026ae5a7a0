"""Checks for the Debian packages and programs the corpus builders use."""

from __future__ import annotations

import os
import shutil


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
