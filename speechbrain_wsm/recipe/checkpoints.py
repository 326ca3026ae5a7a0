"""Checkpoints that survive a killed run or a full disk.

SpeechBrain's :class:`~speechbrain.utils.checkpoints.Checkpointer` writes the
folder's marker ``CKPT.yaml`` first and then every ``<name>.ckpt`` in place.
A run killed (SIGKILL, out of memory, full disk) while a ``.ckpt`` is being
written leaves a folder that looks complete: the next run picks it as the
newest checkpoint, dies on ``EOFError`` / ``PytorchStreamReader failed``, and
never tries the older good one. A 0-byte ``CKPT.yaml`` gives a bare
``TypeError``.

:class:`RobustCheckpointer` is the project's checkpointer (every recipe's
YAML builds it):

* **atomic writes**: every file goes to a temporary name, is flushed to disk,
  then renamed; the marker ``CKPT.yaml`` is written last (the same way), with
  the byte size of every file it vouches for. A folder without its marker is
  an interrupted save: ignored, with a warning, and deleted the next time old
  checkpoints are pruned;
* **fallback**: listing checks each checkpoint (marker readable, recorded
  sizes match, ``torch.save`` zip archives whole, no empty file) and leaves out
  the broken ones with a warning naming them; recovery loads the newest (or
  best) *complete* checkpoint, and if loading one still fails it warns and
  falls back to the next;
* **full disk**: a save that runs out of space raises ``OSError(ENOSPC)``
  saying "no space left on device", where and how much is free, and that the
  earlier checkpoints are intact; the partial folder is removed.

:func:`as_robust` gives the same reading behaviour to a plain SpeechBrain
``Checkpointer`` (the runs recorded before this class existed),
:func:`newest_complete_checkpoint` finds a checkpoint in a save folder without
any recoverables (for loaders of pretrained folders), and
:func:`recover_checkpoint` loads a recipe's best, latest or a named
checkpoint (its final test, ``evaluate``, ``transcribe``).
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import shutil
import time
import zipfile
from collections.abc import Callable

import yaml
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    DEFAULT_SAVE_HOOKS,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
    get_default_hook,
)
from speechbrain.utils.distributed import (
    ddp_barrier,
    ddp_broadcast,
    if_main_process,
)

from speechbrain_wsm.errors import UserFileNotFoundError

__all__ = [
    "RobustCheckpointer",
    "as_robust",
    "checkpoint_problem",
    "newest_complete_checkpoint",
    "recover_checkpoint",
]

logger = logging.getLogger(__name__)

#: Meta key of ``CKPT.yaml`` holding ``{file name: bytes}`` of the checkpoint.
SIZES_KEY = "file-bytes"
_TMP = ".tmp-"
_ZIP_MAGIC = b"PK\x03\x04"
# Messages of torch's zip writer when a write comes up short (disk full).
_SHORT_WRITE = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def _fsync_file(path: pathlib.Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_meta(ckpt_dir: pathlib.Path) -> dict:
    """The meta of ``CKPT.yaml``; ``ValueError`` saying why it is unusable."""
    path = ckpt_dir / METAFNAME
    try:
        with open(path, encoding="utf-8") as f:
            meta = yaml.load(f, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{METAFNAME} unreadable ({e})") from None
    if not isinstance(meta, dict) or "end-of-epoch" not in meta:
        size = path.stat().st_size
        raise ValueError(f"{METAFNAME} is empty or truncated ({size} bytes)")
    return meta


def checkpoint_problem(ckpt: Checkpoint) -> str | None:
    """Why ``ckpt`` cannot be loaded, or None if it looks complete.

    Checks, without loading anything: the sizes ``CKPT.yaml`` records (a
    checkpoint written by :class:`RobustCheckpointer`), empty ``.ckpt``
    files, and ``torch.save`` zip archives cut short (their directory is at
    the end of the file).

    Arguments
    ---------
    ckpt : Checkpoint
        As listed by a checkpointer.

    Returns
    -------
    str or None
        A short reason, naming the file.
    """
    sizes = ckpt.meta.get(SIZES_KEY) or {}
    for fname, size in sizes.items():
        path = pathlib.Path(ckpt.path) / fname
        if not path.is_file():
            return f"{fname} is missing"
        if path.stat().st_size != size:
            return f"{fname} has {path.stat().st_size} bytes, {size} were written"
    for path in ckpt.paramfiles.values():
        path = pathlib.Path(path)
        size = path.stat().st_size
        if size == 0 and sizes.get(path.name) != 0:
            return f"{path.name} is empty"
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == _ZIP_MAGIC and not zipfile.is_zipfile(path):
            return f"{path.name} is truncated ({size} bytes, no zip directory)"
    return None


def _scan(folder: pathlib.Path, warned: set) -> list[Checkpoint]:
    """Complete checkpoints of ``folder``; warns once about each broken one."""

    def warn(path, reason):
        if str(path) not in warned:
            warned.add(str(path))
            logger.warning("checkpoint %s is broken: %s; skipped", path, reason)

    found = []
    if not folder.is_dir():
        return found
    for ckpt_dir in sorted(folder.iterdir()):
        if not ckpt_dir.is_dir() or not ckpt_dir.name.startswith(CKPT_PREFIX):
            continue
        if not (ckpt_dir / METAFNAME).exists():
            warn(ckpt_dir, f"no {METAFNAME} (a save was interrupted)")
            continue
        try:
            meta = _read_meta(ckpt_dir)
        except ValueError as e:
            warn(ckpt_dir, str(e))
            continue
        paramfiles = {
            p.stem: p
            for p in ckpt_dir.iterdir()
            if p.suffix == PARAMFILE_EXT and p.is_file()
        }
        ckpt = Checkpoint(ckpt_dir, meta, paramfiles)
        problem = checkpoint_problem(ckpt)
        if problem is not None:
            warn(ckpt_dir, problem)
            continue
        found.append(ckpt)
    return found


def newest_complete_checkpoint(
    folder, predicate: Callable[[Checkpoint], bool] | None = None
) -> Checkpoint | None:
    """The most recent complete checkpoint of a save folder (None if none).

    Broken checkpoints (see :func:`checkpoint_problem`) are skipped with a
    warning naming them.

    Example
    -------
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> net = torch.nn.Linear(2, 2)
    >>> _ = RobustCheckpointer(d, {"net": net}).save_checkpoint()
    >>> newest_complete_checkpoint(d).paramfiles["net"].name
    'net.ckpt'
    """
    ckpts = RobustCheckpointer(folder).find_checkpoints(ckpt_predicate=predicate)
    return ckpts[0] if ckpts else None


def _no_space_message(path: pathlib.Path, error: BaseException) -> str | None:
    """A "no space left" message when ``error`` is a full disk, else None."""
    text = str(error)
    full = isinstance(error, OSError) and error.errno == errno.ENOSPC
    full = full or any(s in text for s in _SHORT_WRITE)
    if not full:
        return None
    try:
        free = shutil.disk_usage(path.parent).free / 2**20
        free_text = f"{free:.1f} MB free"
    except OSError:
        free_text = "free space unknown"
    return (
        f"no space left on device while writing checkpoint {path} "
        f"({free_text}; {type(error).__name__}: {text.splitlines()[0] if text else ''}). "
        "The earlier checkpoints are intact: free some space (or point "
        "output_folder at a larger disk) and rerun the same command to resume."
    )


class RobustCheckpointer(Checkpointer):
    """A SpeechBrain ``Checkpointer`` with atomic saves and recovery fallback.

    Same arguments and interface as
    :class:`speechbrain.utils.checkpoints.Checkpointer`; set it in a recipe's
    YAML as ``!new:speechbrain_wsm.recipe.checkpoints.RobustCheckpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> net = torch.nn.Linear(2, 2)
    >>> ckpter = RobustCheckpointer(d, {"net": net})
    >>> good = ckpter.save_checkpoint()
    >>> bad = ckpter.save_checkpoint()
    >>> _ = open(bad.path / "net.ckpt", "wb").write(b"PK\\x03\\x04")  # cut short
    >>> ckpter.recover_if_possible().path == good.path  # the older, complete one
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._warned: set = set()

    # -- writing ---------------------------------------------------------------
    def save_checkpoint(
        self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Save every recoverable to a new ``CKPT+...`` folder, marker last.

        See :meth:`speechbrain.utils.checkpoints.Checkpointer.save_checkpoint`.

        Raises
        ------
        OSError
            ``ENOSPC`` with a message naming the file and the free space when
            the disk fills up.
        """
        meta = dict(meta or {})
        ckpt_dir = None
        if if_main_process():
            if name is None:
                ckpt_dir = self._new_checkpoint_dirpath()
            else:
                ckpt_dir = self._custom_checkpoint_dirpath(name)
                # Rewriting a named checkpoint: it is incomplete until re-marked.
                (ckpt_dir / METAFNAME).unlink(missing_ok=True)
            os.makedirs(ckpt_dir, exist_ok=True)
        ckpt_dir = ddp_broadcast(ckpt_dir, src=0)

        paramfiles = {}
        for key, obj in self.recoverables.items():
            final = ckpt_dir / f"{key}{PARAMFILE_EXT}"
            paramfiles[key] = final
            hook = self.custom_save_hooks.get(key) or get_default_hook(
                obj, DEFAULT_SAVE_HOOKS
            )
            if hook is None:
                raise RuntimeError(
                    f"don't know how to save {type(obj).__name__} ('{key}'): "
                    "register a default save hook or give a custom one"
                )
            tmp = ckpt_dir / f"{final.name}{_TMP}{os.getpid()}"
            try:
                hook(obj, tmp)
                if tmp.exists():  # hooks may write on the main process only
                    _fsync_file(tmp)
                    os.replace(tmp, final)
            except (OSError, RuntimeError) as e:
                self._abandon(ckpt_dir, tmp)
                message = _no_space_message(final, e)
                if message is None:
                    raise
                raise OSError(errno.ENOSPC, message) from e

        ddp_barrier()  # every process's files are in place
        checkpoint = None
        if if_main_process():
            checkpoint = self._mark(ckpt_dir, paramfiles, meta, end_of_epoch, verbosity)
        # ... and the marker: no process lists the folder while it is incomplete
        ddp_barrier()
        return checkpoint

    def _mark(self, ckpt_dir, paramfiles, meta, end_of_epoch, verbosity) -> Checkpoint:
        """Write the folder's ``CKPT.yaml`` (meta and file sizes), atomically."""
        saved_meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch, **meta}
        saved_meta[SIZES_KEY] = {
            p.name: p.stat().st_size for p in paramfiles.values() if p.is_file()
        }
        marker = ckpt_dir / METAFNAME
        tmp = ckpt_dir / f"{METAFNAME}{_TMP}{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("# yamllint disable\n")
                f.write(yaml.dump(saved_meta))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, marker)
        except OSError as e:
            self._abandon(ckpt_dir, tmp)
            message = _no_space_message(marker, e)
            if message is None:
                raise
            raise OSError(errno.ENOSPC, message) from e
        _fsync_dir(ckpt_dir)
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {kind} checkpoint in {ckpt_dir}")
        return Checkpoint(ckpt_dir, saved_meta, paramfiles)

    def _abandon(self, ckpt_dir: pathlib.Path, tmp: pathlib.Path) -> None:
        """Remove what a failed save wrote (the folder, on the main process)."""
        tmp.unlink(missing_ok=True)
        if if_main_process():
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    def delete_checkpoints(self, **kwargs):
        """As SpeechBrain's, and also delete folders of interrupted saves."""
        super().delete_checkpoints(**kwargs)
        if not if_main_process():
            return
        for path in self.checkpoints_dir.iterdir():
            if (
                path.is_dir()
                and path.name.startswith(CKPT_PREFIX)
                and not (path / METAFNAME).exists()
            ):
                shutil.rmtree(path, ignore_errors=True)
                logger.info("deleted the interrupted checkpoint %s", path)

    # -- reading ---------------------------------------------------------------
    def list_checkpoints(self):
        """The complete checkpoints; broken ones are skipped with a warning."""
        return _scan(self.checkpoints_dir, self._warned)

    def recover_if_possible(
        self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None
    ):
        """Load the newest (or best) complete checkpoint; fall back on failure.

        Returns the checkpoint loaded, or None when there is none.
        """
        ckpts = self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate)
        if not ckpts:
            logger.info("Would load a checkpoint here, but none found yet.")
            return None
        return self.load_first_loadable(ckpts)

    def load_first_loadable(self, ckpts) -> Checkpoint:
        """Load the first of ``ckpts`` that loads; warn about each that fails.

        Raises
        ------
        RuntimeError
            If none loads (naming each one and its error).
        """
        failures = []
        for ckpt in ckpts:
            try:
                self.load_checkpoint(ckpt)
                if failures:
                    logger.warning("recovered from the older checkpoint %s", ckpt.path)
                return ckpt
            except (EOFError, OSError, RuntimeError, ValueError) as e:
                if isinstance(e, RuntimeError) and "missing a load path" in str(e):
                    raise  # a recipe change, not a broken file
                first_line = str(e).splitlines()[0] if str(e) else ""
                failures.append(f"{ckpt.path}: {type(e).__name__}: {first_line}")
                logger.warning(
                    "checkpoint %s could not be loaded (%s: %s); trying an older one",
                    ckpt.path,
                    type(e).__name__,
                    first_line,
                )
        raise RuntimeError("no checkpoint could be loaded:\n  " + "\n  ".join(failures))


def as_robust(checkpointer: Checkpointer) -> RobustCheckpointer:
    """``checkpointer`` itself if robust, else a robust one sharing its state.

    The copy has the same folder, recoverables and hooks (the same objects),
    so loading through it loads into the original's recoverables.
    """
    if isinstance(checkpointer, RobustCheckpointer):
        return checkpointer
    robust = RobustCheckpointer.__new__(RobustCheckpointer)
    robust.__dict__.update(checkpointer.__dict__)
    robust._warned = set()
    return robust


def recover_checkpoint(
    checkpointer, which: str = "best", run_folder: pathlib.Path | None = None, key=None
):
    """Load a checkpoint into the recoverables; returns the checkpoint.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        The recipe's checkpointer.
    which : str
        ``"best"`` (lowest ``key`` in the meta; the most recent when no
        checkpoint has one), ``"latest"``, or a ``CKPT+...`` folder.
    run_folder : Path, optional
        When ``checkpointer``'s folder holds no checkpoint, ``run_folder/save``
        is used (a run moved since training).
    key : str, optional
        Meta key minimised by ``"best"``; default ``CER`` when a checkpoint
        has one (the CTC recipes), else ``WER`` (runs from before CER).
    """
    # Broken checkpoints (a killed save, a full disk) are skipped with a
    # warning, and a checkpoint that fails to load falls back to the next.
    robust = as_robust(checkpointer)
    folder = pathlib.Path(robust.checkpoints_dir)
    local = None if run_folder is None else pathlib.Path(run_folder) / "save"
    if (
        local is not None
        and local.is_dir()
        and local.resolve() != folder.resolve()
        and not robust.list_checkpoints()
    ):
        logger.info("no checkpoint in %s, reading them from %s", folder, local)
        robust.checkpoints_dir = local
    if which not in ("best", "latest"):
        path = pathlib.Path(which).resolve()
        robust.checkpoints_dir = path.parent
        match = [
            c
            for c in robust.list_checkpoints()
            if pathlib.Path(c.path).resolve() == path
        ]
        if not match:
            raise UserFileNotFoundError(
                f"'{which}' is not a complete checkpoint folder (CKPT+...)"
            )
        robust.load_checkpoint(match[0])
        logger.info("loaded checkpoint %s", match[0].path)
        return match[0]
    ranked = []
    if which == "best":
        if key is None:
            metas = [c.meta for c in robust.list_checkpoints()]
            key = "CER" if any("CER" in m for m in metas) else "WER"
        ranked = robust.find_checkpoints(min_key=key)
    if not ranked:
        ranked = robust.find_checkpoints()
    if not ranked:
        raise UserFileNotFoundError(
            f"no checkpoint in {robust.checkpoints_dir}: has the recipe run?"
        )
    ckpt = robust.load_first_loadable(ranked)
    logger.info("loaded checkpoint %s", ckpt.path)
    return ckpt
