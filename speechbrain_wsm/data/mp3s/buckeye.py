"""Buckeye preparation for conversational ASR (MP3S Buckeye).

Reads the Buckeye corpus with its per-speaker archives extracted (the
``s01.zip`` ... archives hold one zip per recording; extract both levels)::

    <data_folder>/s01/s0101a.wav     (or s01/s0101a/s0101a.wav: any depth)
    <data_folder>/s01/s0101a.words

A ``.words`` file is an xwaves label file: a header ending with a line
``#``, then one line per token, ``<end time> <color> <word>; <citation
pron>; <actual pron>; <POS>``, each token ending where the next begins.
Recordings (tens of minutes each) are cut into utterances at every
non-speech token (``<SIL>``, ``<VOCNOISE>``, ``<IVER>`` interviewer turns,
``<CUTOFF-...>``, ``{B_TRANS}`` ...): each run of words between two such
tokens is an utterance, split at word boundaries when longer than
``max_duration``, kept when it has at least ``min_words`` words and lasts
``min_duration`` seconds (short runs are dropped by design and counted in
the ``.json`` summaries).

Speakers split as in MP3S: ``s36``, ``s37`` for validation, ``s38`` to
``s40`` for test, the others for training. Outputs ``train.csv``,
``dev.csv``, ``test.csv`` with ``ID, duration, wav, spk_id, start, stop,
wrd`` (``start``/``stop`` in seconds into ``wav``; the audio pipeline of
:mod:`speechbrain_wsm.data.mp3s` reads just that segment).

Bad input (a ``.words`` file without audio or the reverse, a label file
without its ``#`` header end, unreadable audio, another sample rate, labels
past the end of the audio) is skipped, counted, listed in
``buckeye_skipped.txt`` and summarised in one log line.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence

from speechbrain_wsm.errors import UserFileNotFoundError

from .._prep import Outputs, Prepared, PrepOptions
from ._common import normalize_words, require_folder

__all__ = ["SKIP_KINDS", "parse_words_file", "prepare_buckeye", "segment_words"]

logger = logging.getLogger(__name__)

SKIP_KINDS = (
    "malformed_words",
    "missing_audio",
    "missing_transcript",
    "unreadable_audio",
    "truncated_audio",
    "wrong_sample_rate",
    "past_end_of_audio",
    "duplicate_id",
)

FIELDS = ("ID", "duration", "wav", "spk_id", "start", "stop", "wrd")

_OUTPUTS = Outputs(FIELDS, SKIP_KINDS, "buckeye_skipped.txt", logger)

VALID_SPEAKERS = ("s36", "s37")
TEST_SPEAKERS = ("s38", "s39", "s40")

_TOKEN = re.compile(r"^\s*(-?[\d.]+)\s+\S+\s*(.*)$")
_LAYOUT = (
    "the Buckeye folder holding the extracted speaker folders "
    "(s01/s0101a.wav with s01/s0101a.words, at any depth)"
)


class WordsFileError(ValueError):
    """A ``.words`` file that cannot be read."""


def parse_words_file(path: str) -> list[tuple[float, float, str]]:
    """Tokens of a Buckeye ``.words`` file as ``(start, end, label)``.

    ``label`` is the orthographic field (``okay``, ``<SIL>``, ``{B_TRANS}``).

    Raises
    ------
    WordsFileError
        If the header never ends (no ``#`` line) or a token line is unreadable.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s0101a.words")
    >>> _ = open(p, "w").write("signal s0101a\\nnfields 4\\n#\\n"
    ...     "    0.50  121 <SIL>; U; U; S\\n    0.90  121 okay; ow k ey; ow k ey; UH\\n")
    >>> parse_words_file(p)
    [(0.0, 0.5, '<SIL>'), (0.5, 0.9, 'okay')]
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    try:
        body = lines.index("#") + 1
    except ValueError:
        body = next((i + 1 for i, x in enumerate(lines) if x.strip() == "#"), None)
        if body is None:
            raise WordsFileError("no '#' line ending the header") from None
    tokens, previous = [], 0.0
    for lineno, line in enumerate(lines[body:], start=body + 1):
        if not line.strip():
            continue
        m = _TOKEN.match(line)
        if m is None:
            raise WordsFileError(f"line {lineno} unreadable: {line.strip()!r}")
        end = float(m.group(1))
        label = m.group(2).split(";", 1)[0].strip()
        start = previous
        previous = max(previous, end)
        if end <= start:
            continue  # zero-length (or negative-time) markers
        tokens.append((start, end, label))
    return tokens


def _is_speech(label: str) -> bool:
    return bool(label) and label[0] not in "<{" and bool(normalize_words(label))


def segment_words(
    tokens: Sequence[tuple[float, float, str]],
    max_duration: float = 20.0,
) -> list[tuple[float, float, str]]:
    """Runs of words between non-speech tokens, split to ``max_duration``.

    Example
    -------
    >>> toks = [(0, 1, "<SIL>"), (1, 1.5, "okay"), (1.5, 2, "so"),
    ...         (2, 3, "<VOCNOISE>"), (3, 3.4, "yeah")]
    >>> segment_words(toks)
    [(1, 2, 'OKAY SO'), (3, 3.4, 'YEAH')]
    """
    segments, words, seg_start, seg_end = [], [], None, None

    def close():
        if words:
            segments.append((seg_start, seg_end, " ".join(words)))

    for start, end, label in tokens:
        if not _is_speech(label):
            close()
            words, seg_start = [], None
            continue
        if seg_start is not None and end - seg_start > max_duration:
            close()
            words, seg_start = [], None
        if seg_start is None:
            seg_start = start
        words.append(normalize_words(label))
        seg_end = end
    close()
    return segments


def prepare_buckeye(
    data_folder: str,
    save_folder: str,
    valid_speakers: Sequence[str] = VALID_SPEAKERS,
    test_speakers: Sequence[str] = TEST_SPEAKERS,
    min_duration: float = 2.0,
    max_duration: float = 20.0,
    min_words: int = 3,
    **options,
) -> dict[str, str]:
    """Write the Buckeye train/dev/test manifests of utterance segments.

    ``data_folder`` holds the extracted speaker folders (a folder of archives
    only is an error saying so); ``save_folder`` gets ``train.csv``,
    ``dev.csv``, ``test.csv`` and ``buckeye_skipped.txt``.
    What every preparation shares (the folders, ``**options``, the result):
    :class:`~speechbrain_wsm.data._prep.PrepOptions`.

    Arguments
    ---------
    valid_speakers, test_speakers : sequence of str
        Speaker IDs (``s36`` ...) of the validation and test sets; the other
        speakers train.
    min_duration, max_duration : float
        Utterance length bounds (seconds).
    min_words : int
        Fewest words in an utterance.

    Example
    -------
    >>> prepare_buckeye("/no/buckeye", "/tmp/out")
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserFileNotFoundError: Buckeye data_folder '/no/buckeye' not found: expected the Buckeye folder ...
    """
    opts = PrepOptions.from_kwargs("prepare_buckeye", options)
    if opts.skip_prep:
        return {}
    require_folder(data_folder, "Buckeye data_folder", _LAYOUT)
    root = os.path.abspath(data_folder)
    names = ["train", "dev", "test"]
    recorded = opts.record(
        source=root,
        valid_speakers=sorted(valid_speakers),
        test_speakers=sorted(test_speakers),
        min_duration=min_duration,
        max_duration=max_duration,
        min_words=min_words,
    )
    if kept := opts.finished(save_folder, names, recorded, "Buckeye manifests", logger):
        return kept

    prepared = Prepared.of(names)
    words_files, wav_files, zips = {}, {}, 0
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if name.startswith("."):
                continue
            if ext == ".words":
                if stem in words_files:
                    prepared.skip(
                        "duplicate_id", stem, os.path.join(dirpath, name), "two .words"
                    )
                    continue
                words_files[stem] = os.path.join(dirpath, name)
            elif ext == ".wav":
                wav_files[stem] = os.path.join(dirpath, name)
            elif ext == ".zip":
                zips += 1
    if not words_files and not wav_files:
        extra = (
            f"; it holds {zips} .zip archives: extract them, and the "
            "per-recording zips inside each speaker folder"
            if zips
            else ""
        )
        raise UserFileNotFoundError(
            f"Buckeye data_folder '{root}' holds no .words or .wav file: expected "
            f"{_LAYOUT}{extra}"
        )
    for stem in sorted(set(wav_files) - set(words_files)):
        prepared.skip(
            "missing_transcript", stem, wav_files[stem], "no .words beside it"
        )
    recordings = []
    for stem in sorted(words_files):
        if stem not in wav_files:
            prepared.skip(
                "missing_audio", stem, words_files[stem], f"no {stem}.wav beside it"
            )
            continue
        recordings.append(stem)

    dropped: Counter = Counter()
    valid_set, test_set = set(valid_speakers), set(test_speakers)
    for stem, audio_end in opts.probe(
        recordings, wav_files.get, str, prepared, "buckeye"
    ):
        try:
            tokens = parse_words_file(words_files[stem])
        except WordsFileError as exc:
            prepared.skip("malformed_words", stem, words_files[stem], str(exc))
            continue
        speaker = stem[:3]
        split = (
            "dev"
            if speaker in valid_set
            else "test"
            if speaker in test_set
            else "train"
        )
        for i, (start, stop, text) in enumerate(segment_words(tokens, max_duration)):
            uid = f"{stem}_{i:04d}"
            if stop > audio_end + 0.01:
                prepared.skip(
                    "past_end_of_audio",
                    uid,
                    words_files[stem],
                    f"ends at {stop:.2f} s, audio lasts {audio_end:.2f} s",
                )
                continue
            if len(text.split()) < min_words:
                dropped["fewer_words"] += 1
                continue
            if stop - start < min_duration:
                dropped["too_short"] += 1
                continue
            row = {
                "ID": uid,
                "duration": f"{stop - start:.4f}",
                "wav": wav_files[stem],
                "spk_id": speaker,
                "start": f"{start:.4f}",
                "stop": f"{stop:.4f}",
                "wrd": text,
            }
            prepared.add(split, row)
    prepared.summary["segments_dropped"] = dict(dropped)
    return _OUTPUTS.write(save_folder, prepared, recorded, f"Buckeye from {root}")
