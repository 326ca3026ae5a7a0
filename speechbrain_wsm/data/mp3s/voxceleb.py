"""VoxCeleb1 preparation for speaker verification (MP3S ASV).

Reads VoxCeleb1 as distributed (the dev and test archives extracted into one
``wav`` folder) and the official trial list::

    <data_folder>/wav/<speaker id10001>/<video>/<00001>.wav   16 kHz
    <data_folder>/veri_test2.txt    "<1|0> id10270/x6uYqmx31kE/00001.wav id10270/..."

Speakers that appear in the trial list are the test speakers; every other
speaker trains the probe (speaker classification), with ``dev_ratio`` of each
speaker's utterances held out for validation. Outputs, in ``save_folder``:

* ``train.csv``, ``dev.csv``: ``ID, duration, wav, spk_id`` (``ID`` is the
  path below ``wav`` with ``--`` for ``/`` and no extension);
* ``test.csv``: every utterance the trials use;
* ``trials.txt``: the trials, ``<label> <enrol ID> <test ID>`` per line, those
  whose audio is missing or unreadable left out (and reported).

Bad input (unreadable audio, another sample rate, malformed trial lines,
trials naming missing audio) is skipped, counted, listed in
``voxceleb1_skipped.txt`` and summarised in one log line.
"""

from __future__ import annotations

import logging
import os

from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError

from .._prep import Outputs, Prepared, PrepOptions
from .._probe import AUDIO_KINDS
from ..manifests import atomic_write_text
from ._common import hash_fraction, require_file, require_folder

__all__ = ["SKIP_KINDS", "prepare_voxceleb1", "utterance_id"]

logger = logging.getLogger(__name__)

SKIP_KINDS = ("malformed_trial", *AUDIO_KINDS, "unexpected_path")

FIELDS = ("ID", "duration", "wav", "spk_id")

_OUTPUTS = Outputs(FIELDS, SKIP_KINDS, "voxceleb1_skipped.txt", logger)

_LAYOUT = "the VoxCeleb1 folder holding wav/<speaker>/<video>/<utterance>.wav"


def utterance_id(relpath: str) -> str:
    """Manifest ID of a path below ``wav/``.

    Example
    -------
    >>> utterance_id("id10270/x6uYqmx31kE/00001.wav")
    'id10270--x6uYqmx31kE--00001'
    """
    relpath = relpath.replace(os.sep, "/")
    return os.path.splitext(relpath)[0].replace("/", "--")


def _read_trials(path: str, prepared: Prepared) -> list[tuple[str, str, str]]:
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                prepared.skip(
                    "malformed_trial",
                    f"{os.path.basename(path)}:{lineno}",
                    path,
                    f"expected '<0|1> <enrol.wav> <test.wav>', got {line.strip()!r}",
                )
                continue
            trials.append((parts[0], parts[1], parts[2]))
    return trials


def prepare_voxceleb1(
    data_folder: str,
    save_folder: str,
    verification_file: str | None = None,
    dev_ratio: float = 0.1,
    **options,
) -> dict[str, str]:
    """Write the VoxCeleb1 verification manifests and trial list.

    ``data_folder`` holds ``wav/`` (dev and test audio together);
    ``save_folder`` gets ``train.csv``, ``dev.csv``, ``test.csv``,
    ``trials.txt`` (in the result as ``trials``) and ``voxceleb1_skipped.txt``.
    What every preparation shares (the folders, ``**options``, the result):
    :class:`~speechbrain_wsm.data._prep.PrepOptions`.

    Arguments
    ---------
    verification_file : str, optional
        The trial list (default ``<data_folder>/veri_test2.txt``, the cleaned
        official list); missing, it is an error.
    dev_ratio : float
        Share of each training speaker's utterances held out for validation
        (chosen by a hash of the ID: stable across runs and machines).

    Example
    -------
    >>> prepare_voxceleb1("/data/VoxCeleb1", "/tmp/out", dev_ratio=1.0)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: dev_ratio must be in [0, 1), got 1.0
    """
    opts = PrepOptions.from_kwargs("prepare_voxceleb1", options)
    if opts.skip_prep:
        return {}
    if not 0.0 <= dev_ratio < 1.0:
        raise UserValueError(f"dev_ratio must be in [0, 1), got {dev_ratio}")
    require_folder(data_folder, "VoxCeleb1 data_folder", _LAYOUT)
    wav_root = os.path.join(data_folder, "wav")
    if not os.path.isdir(wav_root):
        hint = ""
        nested = os.path.join(data_folder, "vox1_dev_wav", "wav")
        if os.path.isdir(nested):
            hint = f" (did you mean data_folder='{os.path.dirname(nested)}'?)"
        raise UserFileNotFoundError(
            f"VoxCeleb1 wav folder '{wav_root}' not found: expected {_LAYOUT}{hint}"
        )
    verification_file = verification_file or os.path.join(data_folder, "veri_test2.txt")
    require_file(
        verification_file,
        "VoxCeleb1 trial list",
        "lines '<1|0> <enrol>.wav <test>.wav' (veri_test2.txt from the "
        "VoxCeleb1 page); pass its path as verification_file",
    )
    wav_root = os.path.abspath(wav_root)
    names = ["train", "dev", "test"]
    recorded = opts.record(
        source=wav_root,
        trials=os.path.abspath(verification_file),
        dev_ratio=dev_ratio,
    )
    trials_path = os.path.join(save_folder, "trials.txt")
    kept = os.path.isfile(trials_path) and opts.finished(
        save_folder, names, recorded, "VoxCeleb1 manifests", logger
    )
    if kept:
        return dict(kept, trials=trials_path)

    prepared = Prepared.of(names)
    trials = _read_trials(verification_file, prepared)
    test_speakers = {p.split("/")[0] for _, a, b in trials for p in (a, b)}
    test_files = sorted({p for _, a, b in trials for p in (a, b)})

    train_files = []
    for root, dirs, files in os.walk(wav_root):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".wav") or name.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(root, name), wav_root).replace(
                os.sep, "/"
            )
            parts = rel.split("/")
            if len(parts) != 3:
                prepared.skip(
                    "unexpected_path",
                    utterance_id(rel),
                    os.path.join(root, name),
                    "not <speaker>/<video>/<utterance>.wav",
                )
                continue
            if parts[0] not in test_speakers:
                train_files.append(rel)

    def rows_of(rels, desc):
        return [
            {
                "ID": utterance_id(rel),
                "duration": f"{seconds:.4f}",
                "wav": os.path.join(wav_root, rel),
                "spk_id": rel.split("/")[0],
            }
            for rel, seconds in opts.probe(
                rels, lambda r: os.path.join(wav_root, r), utterance_id, prepared, desc
            )
        ]

    train_rows = rows_of(train_files, "voxceleb1 train")
    test_rows = rows_of(test_files, "voxceleb1 test")
    usable = {r["ID"] for r in test_rows}
    bad_test = {rel for rel in test_files if utterance_id(rel) not in usable}
    kept_trials = []
    for label, a, b in trials:
        if a in bad_test or b in bad_test:
            continue  # the file itself is reported once, above
        kept_trials.append(f"{label} {utterance_id(a)} {utterance_id(b)}")
    dropped = len(trials) - len(kept_trials)

    for row in train_rows:
        prepared.add("dev" if hash_fraction(row["ID"]) < dev_ratio else "train", row)
    for row in test_rows:
        prepared.add("test", row)
    prepared.summary.update(
        train_speakers=len({r["spk_id"] for r in prepared.manifests["train"]}),
        trials=len(kept_trials),
        trials_dropped=dropped,
    )

    os.makedirs(save_folder, exist_ok=True)
    atomic_write_text(trials_path, "".join(t + "\n" for t in kept_trials))
    outputs = _OUTPUTS.write(
        save_folder, prepared, recorded, f"VoxCeleb1 from {wav_root}"
    )
    if dropped:
        logger.warning(
            "VoxCeleb1: %d of %d trials left out (their audio is missing or "
            "unreadable, see voxceleb1_skipped.txt)",
            dropped,
            len(trials),
        )
    return dict(outputs, trials=trials_path)
