"""LibriSpeech and Libri-light limited preparation: audio folders to CSV manifests.

Both corpora share one layout, which this module reads::

    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("<ID> <WORDS>" lines)

:func:`prepare_librispeech` turns each LibriSpeech split (``train-clean-100``,
``dev-clean``, ...) into ``<save_folder>/<split>.csv``;
:func:`prepare_librilight_limited` turns the ``librispeech_finetuning`` folder
into the ``librilight-10min.csv``, ``librilight-1h.csv`` and
``librilight-10h.csv`` fine-tuning manifests.  Manifests are SpeechBrain CSV
files with the columns ``ID, duration, wav, spk_id, wrd`` (duration in seconds,
``wav`` an absolute path, ``spk_id`` the LibriSpeech speaker).

Durations come from the audio headers (no full decode) read by a pool of
threads; bad input is skipped, counted by kind, listed in
``<save_folder>/<name>_skipped.txt`` and summarised in one log line per
manifest.  A finished manifest is kept on later calls unless its options
changed or ``redo=True``.  In a recipe::

    from speechbrain.utils.distributed import run_on_main
    run_on_main(prepare_librispeech, kwargs={
        "data_folder": hparams["data_folder"], "save_folder": hparams["output_folder"],
        "tr_splits": ["train-clean-100"], "dev_splits": ["dev-clean"],
        "te_splits": ["test-clean", "test-other"], "skip_prep": hparams["skip_prep"]})
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._prep import PrepOptions, SkippedInput, write_outputs
from ._probe import AudioError, probe_audio
from .manifests import MANIFEST_FIELDS, merge_manifests
from .text import is_utf8, normalize_text

__all__ = [
    "LIBRILIGHT_FOLDS",
    "SKIP_KINDS",
    "AudioError",
    "ScanResult",
    "Utterance",
    "prepare_librilight_limited",
    "prepare_librispeech",
    "probe_audio",
    "scan_split",
]

from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError

logger = logging.getLogger(__name__)

#: Kinds of bad input that are skipped and reported, in report order.
SKIP_KINDS = (
    "unreadable_audio",
    "truncated_audio",
    "wrong_sample_rate",
    "missing_audio",
    "missing_transcript",
    "empty_transcript",
    "unusable_transcript",
    "duplicate_id",
    "non_utf8_name",
)


def _printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name escaped (``\\xff``)."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


#: Version of the transcript normalisation; part of a manifest's options, so
#: that a change of the rules prepares the manifests again.
TRANSCRIPT_RULES = "normalize_text-2"  # 2: letters outside A-Z transliterated

#: Libri-light limited folds, relative to the ``librispeech_finetuning`` folder.
LIBRILIGHT_FOLDS = ("1h/0", "1h/1", "1h/2", "1h/3", "1h/4", "1h/5", "9h")

#: Which folds make up each Libri-light limited manifest.
LIBRILIGHT_SUBSETS = {
    "librilight-10min": ("1h/0",),
    "librilight-1h": LIBRILIGHT_FOLDS[:6],
    "librilight-10h": LIBRILIGHT_FOLDS,
}

_LAYOUT = (
    "<speaker>/<chapter>/<speaker>-<chapter>-<utt>{ext} audio with "
    "<speaker>-<chapter>.trans.txt transcripts"
)


@dataclass
class Utterance:
    """One usable utterance: a manifest row."""

    ID: str
    duration: float
    wav: str
    spk_id: str
    wrd: str

    def row(self) -> dict:
        """The manifest row as a dict keyed by :data:`MANIFEST_FIELDS`."""
        return {
            "ID": self.ID,
            "duration": f"{self.duration:.4f}",
            "wav": self.wav,
            "spk_id": self.spk_id,
            "wrd": self.wrd,
        }


@dataclass
class ScanResult(SkippedInput):
    """What :func:`scan_split` found: usable utterances and skipped input.

    ``skipped`` holds ``(kind, ID, path, detail)`` tuples, one per skipped
    item; ``counts()`` numbers them per kind.
    """

    utterances: list[Utterance] = field(default_factory=list)
    #: ID -> the letters of its transcript that have no A-Z form (dropped)
    lost_letters: dict[str, str] = field(default_factory=dict)

    def hours(self) -> float:
        """Total duration of the usable utterances, in hours."""
        return sum(u.duration for u in self.utterances) / 3600.0

    def extend(self, other: ScanResult) -> None:
        """Append another result (e.g. another fold) to this one."""
        self.utterances.extend(other.utterances)
        self.skipped.extend(other.skipped)


def transcripts_stamp(folder: str) -> str:
    """A fingerprint of the ``*.trans.txt`` files under ``folder`` (names, sizes, times).

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "1-2.trans.txt"), "w").write("1-2-3 HI\\n")
    >>> a = transcripts_stamp(d)
    >>> _ = open(os.path.join(d, "1-2.trans.txt"), "w").write("1-2-3 HELLO\\n")
    >>> a == transcripts_stamp(d)
    False
    """
    digest = hashlib.sha1()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".trans.txt"):
                path = os.path.join(root, name)
                st = os.stat(path)
                rel = os.path.relpath(path, folder)
                digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_transcripts(path: str, entries: dict, result: ScanResult) -> None:
    """Parse a ``*.trans.txt`` file into ``entries`` (ID -> (text, path))."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            uid, _, text = line.partition(" ")
            text = " ".join(text.split())
            if uid in entries:
                result.skip("duplicate_id", uid, path, "transcript line repeated")
                continue
            entries[uid] = (text, path)


def _collect(
    folder: str, audio_ext: str, result: ScanResult
) -> list[tuple[str, str, str]]:
    """Walk ``folder``; pair transcripts with audio; return (ID, path, text)."""
    candidates = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        transcripts: dict[str, tuple[str, str]] = {}
        audio = {}
        for name in sorted(files):
            if name.endswith(".trans.txt"):
                _read_transcripts(os.path.join(root, name), transcripts, result)
            elif name.endswith(audio_ext):
                if not is_utf8(name):  # a manifest (UTF-8) cannot name it
                    result.skip(
                        "non_utf8_name",
                        _printable(name[: -len(audio_ext)]),
                        _printable(os.path.join(root, name)),
                        "the file name is not UTF-8: rename the file",
                    )
                    continue
                audio[name[: -len(audio_ext)]] = os.path.join(root, name)
        for uid, (raw, tpath) in transcripts.items():
            path = audio.pop(uid, None)
            # upper case, digits spelt, punctuation and accents removed, as the
            # tokenizers' units expect (data/README.md)
            lost: list[str] = []
            text = normalize_text(raw, lost) if raw else ""
            if lost:
                result.lost_letters[uid] = "".join(lost)
            if not raw:
                result.skip(
                    "empty_transcript", uid, path or tpath, "no words after the ID"
                )
            elif not text:
                result.skip(
                    "unusable_transcript",
                    uid,
                    path or tpath,
                    f"nothing left after normalisation of {raw[:40]!r}",
                )
            elif path is None:
                result.skip(
                    "missing_audio", uid, tpath, f"no {uid}{audio_ext} beside it"
                )
            else:
                candidates.append((uid, path, text))
        for uid, path in audio.items():
            result.skip(
                "missing_transcript", uid, path, "no line in any .trans.txt here"
            )
    return candidates


def scan_split(
    folder: str,
    audio_ext: str = ".flac",
    audio_check: str = "tail",
    sample_rate: int | None = 16000,
    num_workers: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> ScanResult:
    """Scan one folder in the LibriSpeech layout.

    Transcripts (``*.trans.txt``) are paired with the audio files beside them;
    audio headers are probed by ``num_workers`` threads with a progress bar.

    Arguments
    ---------
    folder : str
        A split folder (``.../LibriSpeech/dev-clean``) or any folder below
        which ``<speaker>/<chapter>`` folders hold audio and transcripts.
    audio_ext : str
        Audio file extension.
    audio_check : str
        See :func:`probe_audio`.
    sample_rate : int, optional
        Expected sample rate; ``None`` accepts any.
    num_workers : int, optional
        Threads reading headers (default ``min(16, 2 * cpu_count)``).
    progress : bool
        Show a tqdm progress bar.
    desc : str, optional
        Progress bar label.

    Returns
    -------
    ScanResult
        Usable utterances sorted by ID, and the skipped items.

    Example
    -------
    >>> import os
    >>> sample = os.path.join(os.path.dirname(__file__), "..", "..", "tests",
    ...                       "samples", "LibriSpeech", "test-clean")
    >>> if os.path.isdir(sample):
    ...     result = scan_split(sample, progress=False)
    ...     print(len(result.utterances) > 0, result.skipped)
    ... else:
    ...     print(True, [])
    True []
    """
    result = ScanResult()
    candidates = _collect(folder, audio_ext, result)
    if result.lost_letters:
        listed = ", ".join(
            f"{uid} ({letters})"
            for uid, letters in list(result.lost_letters.items())[:10]
        )
        logger.warning(
            "%s: %d transcript(s) hold letters with no A-Z form, left out of "
            "their words: %s%s",
            folder,
            len(result.lost_letters),
            listed,
            " ..." if len(result.lost_letters) > 10 else "",
        )
    opts = PrepOptions(sample_rate, audio_check, num_workers, progress)
    for (uid, path, text), seconds in opts.probe(
        candidates,
        lambda item: item[1],
        lambda item: item[0],
        result,
        desc or os.path.basename(os.path.normpath(folder)),
    ):
        result.utterances.append(
            Utterance(
                ID=uid,
                duration=seconds,
                wav=os.path.abspath(path),
                spk_id=uid.split("-")[0],
                wrd=text,
            )
        )
    result.utterances.sort(key=lambda u: u.ID)
    return result


def _scan(folder: str, audio_ext: str, opts: PrepOptions, desc: str) -> ScanResult:
    return scan_split(
        folder,
        audio_ext,
        opts.audio_check,
        opts.sample_rate,
        opts.num_workers,
        opts.progress,
        desc,
    )


def _recorded(folder: str, audio_ext: str, opts: PrepOptions) -> dict:
    """The options a manifest of ``folder`` records: a change prepares it again.

    They include a stamp of the transcripts and the version of their rules:
    an edited ``.trans.txt`` prepares the manifest again.
    """
    return opts.record(
        source=folder,
        audio_ext=audio_ext,
        transcripts=transcripts_stamp(folder),
        transcript_rules=TRANSCRIPT_RULES,
    )


# --------------------------------------------------------------------------- #
# Argument checks
# --------------------------------------------------------------------------- #


def _as_list(splits: str | Iterable[str] | None) -> list[str]:
    if not splits:
        return []
    if isinstance(splits, str):
        return [splits]
    return list(splits)


def _missing_split_error(data_folder: str, split: str, audio_ext: str) -> Exception:
    found = sorted(
        d
        for d in os.listdir(data_folder)
        if os.path.isdir(os.path.join(data_folder, d))
    )
    hint = ""
    if "LibriSpeech" in found:
        hint = (
            f" (did you mean data_folder='{os.path.join(data_folder, 'LibriSpeech')}'?)"
        )
    return FileNotFoundError(
        f"LibriSpeech split '{split}' not found: expected the folder "
        f"'{os.path.join(data_folder, split)}' holding "
        f"{_LAYOUT.format(ext=audio_ext)}; folders present in "
        f"'{data_folder}': {found}{hint}"
    )


# --------------------------------------------------------------------------- #
# Public preparation functions
# --------------------------------------------------------------------------- #


def prepare_librispeech(
    data_folder: str,
    save_folder: str,
    tr_splits: Sequence[str] = (),
    dev_splits: Sequence[str] = (),
    te_splits: Sequence[str] = (),
    merge_lst: Sequence[str] = (),
    merge_name: str | None = None,
    audio_ext: str = ".flac",
    **options,
) -> dict[str, str]:
    """Write one SpeechBrain CSV manifest per LibriSpeech split.

    ``data_folder`` is the extracted ``LibriSpeech`` folder, holding
    ``<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and
    ``<speaker>-<chapter>.trans.txt``; ``save_folder`` gets ``<split>.csv``,
    ``<split>.json`` (summary and options) and ``<split>_skipped.txt`` (bad
    input report) per split.
    What every preparation shares (the folders, ``**options``, the result):
    :class:`~speechbrain_wsm.data._prep.PrepOptions`; here ``audio_check``
    defaults to ``"tail"``.

    Arguments
    ---------
    tr_splits, dev_splits, te_splits : sequence of str
        Split folder names, e.g. ``["train-clean-100"]``, ``["dev-clean"]``,
        ``["test-clean", "test-other"]``.
    merge_lst : sequence of str
        Splits whose manifests are concatenated into ``<merge_name>.csv``
        (e.g. the three training splits of LibriSpeech 960 h).
    merge_name : str, optional
        Name of the merged manifest (default ``"train"``).
    audio_ext : str
        Audio file extension.

    Example
    -------
    >>> import os, tempfile
    >>> sample = os.path.join(os.path.dirname(__file__), "..", "..", "tests",
    ...                       "samples", "LibriSpeech")
    >>> if os.path.isdir(sample):
    ...     out = prepare_librispeech(sample, tempfile.mkdtemp(),
    ...                               te_splits=["test-clean"], progress=False)
    ...     print(sorted(out))
    ... else:
    ...     print(["test-clean"])
    ['test-clean']
    """
    opts = PrepOptions.from_kwargs("prepare_librispeech", options, audio_check="tail")
    if opts.skip_prep:
        return {}
    splits = list(
        dict.fromkeys(_as_list(tr_splits) + _as_list(dev_splits) + _as_list(te_splits))
    )
    if not splits and not merge_lst:
        raise UserValueError("prepare_librispeech: no split given (tr/dev/te_splits)")
    if not os.path.isdir(data_folder):
        raise UserFileNotFoundError(
            f"LibriSpeech data_folder '{data_folder}' not found: expected the "
            f"extracted 'LibriSpeech' folder holding <split>/"
            f"{_LAYOUT.format(ext=audio_ext)}"
        )
    for split in splits:
        if not os.path.isdir(os.path.join(data_folder, split)):
            raise _missing_split_error(data_folder, split, audio_ext)
    for name, folder in (("data_folder", data_folder), ("save_folder", save_folder)):
        if not is_utf8(os.path.abspath(folder)):
            raise UserValueError(
                f"{name} '{_printable(os.path.abspath(folder))}' holds a byte that "
                "is not UTF-8, which manifests cannot record: rename the folder "
                "or give a link to it with a UTF-8 name (ln -s)"
            )
    os.makedirs(save_folder, exist_ok=True)

    outputs = {}
    for split in splits:
        folder = os.path.abspath(os.path.join(data_folder, split))
        recorded = _recorded(folder, audio_ext, opts)
        if kept := opts.finished(save_folder, split, recorded, split, logger):
            outputs.update(kept)
            continue
        result = _scan(folder, audio_ext, opts, split)
        if not result.utterances and not result.skipped:
            raise UserFileNotFoundError(
                f"LibriSpeech split '{folder}' holds no {audio_ext} audio and no "
                f"transcript: expected {_LAYOUT.format(ext=audio_ext)}"
            )
        outputs.update(
            write_outputs(
                save_folder,
                {split: [u.row() for u in result.utterances]},
                MANIFEST_FIELDS,
                result,
                recorded,
                f"{split}_skipped.txt",
                f"{split} from {folder}",
                SKIP_KINDS,
                label=split,
                log=logger,
            )
        )

    if merge_lst:
        outputs[merge_name or "train"] = merge_manifests(
            [os.path.join(save_folder, f"{s}.csv") for s in merge_lst],
            os.path.join(save_folder, f"{merge_name or 'train'}.csv"),
        )
    return outputs


def prepare_librilight_limited(
    data_folder: str,
    save_folder: str,
    audio_ext: str = ".flac",
    **options,
) -> dict[str, str]:
    """Write the Libri-light limited fine-tuning manifests.

    ``librilight-10min.csv`` is fold ``1h/0``, ``librilight-1h.csv`` the six
    folds ``1h/0`` to ``1h/5`` and ``librilight-10h.csv`` those plus ``9h``;
    each fold's ``clean`` and ``other`` parts (whichever exist) are included.

    ``data_folder`` is the extracted ``librispeech_finetuning`` folder
    (``1h/{0..5}/{clean,other}/...`` and ``9h/{clean,other}/...``, LibriSpeech
    layout below; each of the seven folds must be there); ``save_folder`` gets
    the three manifests and the ``librilight_skipped.txt`` report.
    ``audio_ext`` and ``**options`` are as for :func:`prepare_librispeech`.

    Example
    -------
    >>> prepare_librilight_limited("/data/librispeech_finetuning", "/tmp/out",
    ...                            skip_prep=True)
    {}
    """
    opts = PrepOptions.from_kwargs(
        "prepare_librilight_limited", options, audio_check="tail"
    )
    if opts.skip_prep:
        return {}
    expected = (
        "1h/{0..5}/{clean,other} and 9h/{clean,other}, each holding "
        + _LAYOUT.format(ext=audio_ext)
    )
    if not os.path.isdir(data_folder):
        raise UserFileNotFoundError(
            f"Libri-light data_folder '{data_folder}' not found: expected the "
            f"extracted 'librispeech_finetuning' folder with {expected}"
        )
    for fold in LIBRILIGHT_FOLDS:
        path = os.path.join(data_folder, fold)
        if not os.path.isdir(path):
            hint = ""
            nested = os.path.join(data_folder, "librispeech_finetuning")
            if os.path.isdir(nested):
                hint = f" (did you mean data_folder='{nested}'?)"
            raise UserFileNotFoundError(
                f"Libri-light fold '{fold}' not found: expected the folder "
                f"'{path}' in '{data_folder}', which should hold {expected}{hint}"
            )
    os.makedirs(save_folder, exist_ok=True)
    root = os.path.abspath(data_folder)
    recorded = _recorded(root, audio_ext, opts)
    names = list(LIBRILIGHT_SUBSETS)
    what = "Libri-light limited manifests"
    if kept := opts.finished(save_folder, names, recorded, what, logger):
        return kept

    per_fold: dict[str, ScanResult] = {}
    for fold in LIBRILIGHT_FOLDS:
        result = _scan(os.path.join(root, fold), audio_ext, opts, f"librilight {fold}")
        if not result.utterances and not result.skipped:
            raise UserFileNotFoundError(
                f"Libri-light fold '{os.path.join(root, fold)}' holds no "
                f"{audio_ext} audio and no transcript: expected {expected}"
            )
        per_fold[fold] = result

    # An utterance belongs to one fold only: later copies are skipped.
    seen: dict[str, str] = {}
    for fold in LIBRILIGHT_FOLDS:
        kept = []
        for utt in per_fold[fold].utterances:
            if utt.ID in seen:
                per_fold[fold].skip(
                    "duplicate_id", utt.ID, utt.wav, f"already in fold {seen[utt.ID]}"
                )
                continue
            seen[utt.ID] = fold
            kept.append(utt)
        per_fold[fold].utterances = kept
    everything = ScanResult()
    for fold in LIBRILIGHT_FOLDS:
        everything.extend(per_fold[fold])
    manifests, per_manifest = {}, {}
    for name, folds in LIBRILIGHT_SUBSETS.items():
        merged = ScanResult()
        for fold in folds:
            merged.extend(per_fold[fold])
        merged.utterances.sort(key=lambda u: u.ID)
        manifests[name] = [u.row() for u in merged.utterances]
        per_manifest[name] = {"folds": list(folds), "skipped": dict(merged.counts())}
    return write_outputs(
        save_folder,
        manifests,
        MANIFEST_FIELDS,
        everything,
        recorded,
        "librilight_skipped.txt",
        f"Libri-light limited from {root}",
        SKIP_KINDS,
        per_manifest=per_manifest,
        log=logger,
    )
