"""IEMOCAP preparation for 4-class emotion recognition (MP3S ER).

Reads the ``IEMOCAP_full_release`` folder as distributed::

    Session{1..5}/sentences/wav/<dialog>/<utterance>.wav      16 kHz
    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt

Each evaluation file holds one line per utterance with its consensus label,
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, ...]``, and
the annotators' votes on other lines (ignored). The four classes of the
usual protocol are kept, with excited merged into happy: ``neu``, ``hap``
(``hap`` + ``exc``), ``sad``, ``ang``; utterances with another label
(frustration, surprise, ``xxx`` ...) are left out by design and counted in
the ``.json`` summaries, not reported as bad input.

Folds are leave-one-session-out, hence speaker-independent: session
``test_session`` (both its speakers) is the test set; the other four
sessions train, with ``valid_ratio`` of their utterances (chosen by a hash of
the ID) held out for model selection. Outputs ``train.csv``, ``valid.csv``,
``test.csv`` with ``ID, duration, wav, spk_id, emo`` (``spk_id`` like
``Ses01F``: session and the speaker's gender letter).

Bad input (malformed label lines, labelled utterances without audio,
unreadable audio, another sample rate, repeated IDs) is skipped, counted,
listed in ``iemocap_skipped.txt`` and summarised in one log line.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter

from speechbrain_wsm.errors import UserValueError

from .._prep import Outputs, Prepared, PrepOptions
from .._probe import AUDIO_KINDS
from ._common import hash_fraction, require_folder

__all__ = ["EMOTIONS", "SKIP_KINDS", "prepare_iemocap"]

logger = logging.getLogger(__name__)

#: Label in the evaluation files -> class of the 4-class protocol.
EMOTIONS = {"neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad", "ang": "ang"}

SKIP_KINDS = ("malformed_line", *AUDIO_KINDS, "duplicate_id")

FIELDS = ("ID", "duration", "wav", "spk_id", "emo")

_OUTPUTS = Outputs(FIELDS, SKIP_KINDS, "iemocap_skipped.txt", logger)

_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[")
_LAYOUT = (
    "the IEMOCAP_full_release folder holding Session{1..5}/sentences/wav/"
    "<dialog>/<utterance>.wav and Session{1..5}/dialog/EmoEvaluation/*.txt"
)


def _speaker(uid: str) -> str:
    """``Ses01F_impro01_M003`` -> ``Ses01M`` (the last part names the speaker)."""
    return uid[:5] + uid.rsplit("_", 1)[-1][:1]


def _read_labels(folder: str, prepared: Prepared, labels: dict, excluded: Counter):
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (
            name.startswith(".")
            or not name.endswith(".txt")
            or not os.path.isfile(path)
        ):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.startswith("["):
                    continue  # headers, annotator votes, blank lines
                m = _LINE.match(line)
                if m is None:
                    prepared.skip(
                        "malformed_line",
                        f"{name}:{lineno}",
                        path,
                        f"expected '[start - end] <utt> <label> [v, a, d]': "
                        f"{line.strip()!r}",
                    )
                    continue
                uid, label = m.group(3), m.group(4)
                if uid in labels:
                    prepared.skip("duplicate_id", uid, path, "labelled twice")
                    continue
                if label not in EMOTIONS:
                    excluded[label] += 1
                    labels[uid] = None
                    continue
                labels[uid] = EMOTIONS[label]


def prepare_iemocap(
    data_folder: str,
    save_folder: str,
    test_session: int = 5,
    valid_ratio: float = 0.1,
    **options,
) -> dict[str, str]:
    """Write the manifests of one leave-one-session-out IEMOCAP fold.

    ``data_folder`` is the ``IEMOCAP_full_release`` folder (all five sessions
    must be there); ``save_folder`` gets ``train.csv``, ``valid.csv``,
    ``test.csv`` and ``iemocap_skipped.txt``.
    What every preparation shares (the folders, ``**options``, the result):
    :class:`~speechbrain_wsm.data._prep.PrepOptions`.

    Arguments
    ---------
    test_session : int
        The held-out session (1 to 5): the fold.
    valid_ratio : float
        Share of the training sessions' utterances used for validation.

    Example
    -------
    >>> prepare_iemocap("/data/IEMOCAP_full_release", "/tmp/out", test_session=6)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: test_session must be 1 to 5, got 6
    """
    opts = PrepOptions.from_kwargs("prepare_iemocap", options)
    if opts.skip_prep:
        return {}
    if int(test_session) not in range(1, 6):
        raise UserValueError(f"test_session must be 1 to 5, got {test_session}")
    if not 0.0 <= valid_ratio < 1.0:
        raise UserValueError(f"valid_ratio must be in [0, 1), got {valid_ratio}")
    nested = os.path.join(data_folder, "IEMOCAP_full_release")
    hint = f" (did you mean data_folder='{nested}'?)" if os.path.isdir(nested) else ""
    require_folder(data_folder, "IEMOCAP data_folder", _LAYOUT + hint)
    root = os.path.abspath(data_folder)
    for session in range(1, 6):
        for sub in ("sentences/wav", "dialog/EmoEvaluation"):
            require_folder(
                os.path.join(root, f"Session{session}", sub),
                f"IEMOCAP Session{session} folder",
                _LAYOUT + hint,
            )
    names = ["train", "valid", "test"]
    recorded = opts.record(
        source=root, test_session=int(test_session), valid_ratio=valid_ratio
    )
    if kept := opts.finished(save_folder, names, recorded, "IEMOCAP manifests", logger):
        return kept

    prepared = Prepared.of(names)
    excluded: Counter = Counter()
    candidates = []
    for session in range(1, 6):
        labels: dict = {}
        base = os.path.join(root, f"Session{session}")
        _read_labels(
            os.path.join(base, "dialog", "EmoEvaluation"), prepared, labels, excluded
        )
        audio = {}
        for dirpath, dirs, files in os.walk(os.path.join(base, "sentences", "wav")):
            dirs.sort()
            for name in files:
                if name.endswith(".wav") and not name.startswith("."):
                    audio[name[:-4]] = os.path.join(dirpath, name)
        for uid, emo in sorted(labels.items()):
            if emo is None:
                continue
            path = audio.get(uid)
            if path is None:
                dialog = uid.rsplit("_", 1)[0]
                expected = os.path.join(base, "sentences", "wav", dialog, f"{uid}.wav")
                prepared.skip("missing_audio", uid, expected, "labelled, no audio")
                continue
            candidates.append((uid, path, emo, session))

    for (uid, path, emo, session), seconds in opts.probe(
        candidates, lambda c: c[1], lambda c: c[0], prepared, "iemocap"
    ):
        row = {
            "ID": uid,
            "duration": f"{seconds:.4f}",
            "wav": path,
            "spk_id": _speaker(uid),
            "emo": emo,
        }
        if session == int(test_session):
            prepared.add("test", row)
        elif hash_fraction(uid) < valid_ratio:
            prepared.add("valid", row)
        else:
            prepared.add("train", row)
    prepared.summary["excluded_labels"] = dict(sorted(excluded.items()))
    return _OUTPUTS.write(
        save_folder, prepared, recorded, f"IEMOCAP fold {test_session} from {root}"
    )
