"""Checks for the Debian packages and programs the corpus builders use, and
their command lines."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._prep import KeywordOptions, read_summary, same_options

__all__ = [
    "BuildOptions",
    "MissingPackageError",
    "builder_arguments",
    "builder_parser",
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


@dataclass(frozen=True)
class BuildOptions(KeywordOptions):
    """The options every corpus builder takes beside its own, as ``**options``.

    A builder is ``build_<corpus>(out, <its own arguments>, **options)`` and
    returns a summary dict; a finished corpus built with the same options is
    kept.  Its command line takes the same options (:func:`builder_parser`).

    Attributes
    ----------
    seed : int
        Seed of every random choice (which utterance goes to which split ...).
    workers : int, optional
        Parallel workers (default: the number of CPUs).
    progress : bool
        Show progress bars.
    redo : bool
        Build again even if a finished corpus with the same options exists.
    """

    seed: int = 0
    workers: int | None = None
    progress: bool = True
    redo: bool = False

    def built(self, summary_path: str, recorded: dict) -> dict | None:
        """The summary of a corpus built with the options ``recorded``, to keep.

        ``None`` with ``redo``, or when the summary at ``summary_path`` is
        missing or records other options.

        Example
        -------
        >>> import tempfile, os
        >>> BuildOptions().built(os.path.join(tempfile.mkdtemp(), "s.json"), {}) is None
        True
        """
        summary = None if self.redo else read_summary(summary_path)
        if summary is not None and same_options(summary.get("options"), recorded):
            return summary
        return None


def builder_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A corpus builder's command line, with the options every builder takes.

    ``--out`` (required), ``--seed``, ``--workers``, ``--redo`` and
    ``--no_progress``: :func:`builder_arguments` turns them into the
    builder's ``out``, ``seed``, ``workers``, ``redo`` and ``progress``.

    Example
    -------
    >>> args = builder_parser("build", "A corpus.").parse_args(["--out", "/c"])
    >>> builder_arguments(args)
    {'out': '/c', 'seed': 0, 'workers': None, 'progress': True, 'redo': False}
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--no_progress", action="store_true")
    return parser


def builder_arguments(args: argparse.Namespace) -> dict:
    """The builder's arguments from the options of :func:`builder_parser`."""
    return {
        "out": args.out,
        "seed": args.seed,
        "workers": args.workers,
        "progress": not args.no_progress,
        "redo": args.redo,
    }


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
