"""Building the real-speech corpus in the LibriSpeech layout."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf
from tqdm import tqdm

from .._layout import utterance_path, write_flac, write_speakers, write_transcripts
from .._system import BuildOptions, require_executable, require_path
from ..manifests import atomic_write_text
from .sources import (
    ASTERISK_SOUNDS,
    ASTERISK_TRANSCRIPTS,
    G722_BYTES_PER_SECOND,
    LIBRIVOX_DIR,
    decode_g722,
)
from .texts import (
    Prompt,
    clean_asterisk_prompt,
    read_asterisk_transcripts,
    read_librivox_transcripts,
    split_prompts,
)

__all__ = [
    "ASTERISK_SPEAKER",
    "FINETUNE_SPLIT",
    "LIBRIVOX_CHAPTER",
    "LIBRIVOX_SPEAKER",
    "TEST_SPLIT",
    "build_debian_corpus",
    "build_librivox_split",
]

logger = logging.getLogger(__name__)

FINETUNE_SPLIT = "train-real-10min"
TEST_SPLIT = "test-real"
ASTERISK_SPEAKER = "10001"
LIBRIVOX_SPEAKER = "10002"
LIBRIVOX_CHAPTER = "1"
# Chapter numbers for the prompt folders; other folders are numbered after these.
_CHAPTERS = ("", "dictate", "digits", "followme", "letters", "phonetic")


def build_librivox_split(
    split_dir: str, librivox_dir: str = LIBRIVOX_DIR
) -> list[Prompt]:
    """Write pocketsphinx's LibriVox utterances into a LibriSpeech split folder.

    Speaker ``10002``, chapter ``1`` (the book's first chapter); the utterance
    number is the one in the source file name (``...-0870.wav`` ->
    ``10002-1-0870``).

    Arguments
    ---------
    split_dir : str
        The split folder to write into (e.g. ``.../LibriSpeech/test-real``).
    librivox_dir : str
        pocketsphinx-testdata's LibriVox folder.

    Returns
    -------
    list of Prompt
        The utterances written.

    Example
    -------
    >>> import tempfile
    >>> if os.path.isdir(LIBRIVOX_DIR):
    ...     print(len(build_librivox_split(tempfile.mkdtemp())))
    ... else:
    ...     print(5)
    5
    """
    written = []
    for stem, words in read_librivox_transcripts(librivox_dir):
        src = os.path.join(librivox_dir, stem + ".wav")
        if not os.path.isfile(src) or not words:
            logger.warning("LibriVox utterance %s skipped (no audio or words)", stem)
            continue
        number = re.search(r"(\d+)$", stem)
        uid = f"{LIBRIVOX_SPEAKER}-{LIBRIVOX_CHAPTER}-{int(number.group(1)):04d}"
        audio, rate = sf.read(src, dtype="int16")
        if rate != 16000:
            raise ValueError(f"'{src}' is {rate} Hz, expected 16000 Hz")
        write_flac(utterance_path(split_dir, uid), audio, rate)
        written.append(Prompt(uid, words, src, len(audio) / rate))
    write_transcripts(split_dir, [(p.uid, p.words) for p in written])
    return written


def _asterisk_prompts(
    sounds: str, transcripts: dict[str, str], max_duration: float
) -> tuple[list[Prompt], list[tuple[str, str, str]]]:
    """Prompts to keep and ``(name, reason, text)`` for those left out."""
    audio = {}
    for root, _, files in os.walk(sounds):
        for f in files:
            if f.endswith(".g722"):
                rel = os.path.relpath(os.path.join(root, f), sounds)
                audio[rel[: -len(".g722")].replace(os.sep, "/")] = os.path.join(root, f)
    folders = sorted({n.rpartition("/")[0] for n in audio} - set(_CHAPTERS))
    chapter_of = {f: str(i + 1) for i, f in enumerate(list(_CHAPTERS) + folders)}

    kept, dropped = [], []
    for name in sorted(set(transcripts) - set(audio)):
        dropped.append((name, "no_audio", transcripts[name]))
    counters: Counter = Counter()
    for name in sorted(audio):
        folder = name.rpartition("/")[0]
        chapter = chapter_of[folder]
        counters[chapter] += 1
        uid = f"{ASTERISK_SPEAKER}-{chapter}-{counters[chapter]:04d}"
        if name not in transcripts:
            dropped.append((name, "no_transcript", ""))
            continue
        words, reason = clean_asterisk_prompt(name, transcripts[name])
        duration = os.path.getsize(audio[name]) / G722_BYTES_PER_SECOND
        if words is not None and duration > max_duration:
            words, reason = None, "too_long"
        if words is None:
            dropped.append((name, reason, transcripts[name]))
            continue
        kept.append(Prompt(uid, words, audio[name], duration, transcripts[name]))
    return kept, dropped


_ATTRIBUTION = """\
This corpus was built by speechbrain_wsm.data.debian_corpus from Debian packages.

Speaker 10001: Asterisk core sound prompts (English), recorded by Allison Smith
(http://www.theivrvoice.com), financial contributions by Digium, Inc.
Packages asterisk-core-sounds-en (transcripts) and asterisk-core-sounds-en-g722
(audio). Licence: Creative Commons Attribution-ShareAlike 3.0 (CC-BY-SA-3.0).
Changes: decoded from G.722 to 16 kHz FLAC, transcripts normalised, prompts
renamed (see SOURCES.tsv). Redistributing this audio requires the same licence.

Speaker 10002: LibriVox recording of Jane Austen's "Sense and Sensibility",
chapter 1 (public domain), as shipped in the pocketsphinx-testdata package
(CMU Sphinx test data, BSD-2-Clause packaging). Transcripts from its
'transcription' file, normalised.
"""


def build_debian_corpus(
    out: str,
    finetune_minutes: float = 10.0,
    max_duration: float = 35.0,
    asterisk_sounds: str = ASTERISK_SOUNDS,
    asterisk_transcripts: str = ASTERISK_TRANSCRIPTS,
    librivox_dir: str = LIBRIVOX_DIR,
    **options,
) -> dict:
    """Build the real-speech corpus from the Debian packages' files.

    Arguments
    ---------
    out : str
        Output folder; the corpus goes to ``<out>/LibriSpeech``.
    finetune_minutes : float
        Target size of ``train-real-10min`` (Asterisk prompts only).
    max_duration : float
        Prompts longer than this (seconds) are left out.
    asterisk_sounds : str
        Folder of the ``.g722`` prompts.
    asterisk_transcripts : str
        ``core-sounds-en.txt`` or ``.txt.gz``.
    librivox_dir : str
        pocketsphinx-testdata's LibriVox folder.
    **options
        ``seed`` (of the fine-tuning / test split), ``workers`` (parallel ffmpeg
        decoders), ``progress``, ``redo``: see
        :class:`~speechbrain_wsm.data._system.BuildOptions`.

    Returns
    -------
    dict
        Summary: per split the number of utterances and minutes, the prompts
        left out per reason, and the paths.

    Raises
    ------
    MissingPackageError
        Naming the Debian package to install when a source is missing.

    Example
    -------
    From Python (about 25 s on two cores)::

        summary = build_debian_corpus("corpora/real")
        summary["splits"]["train-real-10min"]["minutes"]  # about 10
    """
    opts = BuildOptions.from_kwargs("build_debian_corpus", options)
    ffmpeg = require_executable("ffmpeg", "ffmpeg")
    require_path(
        asterisk_sounds, "asterisk-core-sounds-en-g722", "Asterisk G.722 prompts"
    )
    transcripts = read_asterisk_transcripts(asterisk_transcripts)
    read_librivox_transcripts(librivox_dir)

    root = os.path.join(out, "LibriSpeech")
    marker = os.path.join(root, ".debian_corpus.json")
    recorded = {
        "finetune_minutes": finetune_minutes,
        "max_duration": max_duration,
        "seed": opts.seed,
        "asterisk_sounds": os.path.abspath(asterisk_sounds),
        "asterisk_transcripts": os.path.abspath(asterisk_transcripts),
        "librivox_dir": os.path.abspath(librivox_dir),
    }
    if summary := opts.built(marker, recorded):
        logger.info("Debian corpus already built in %s", root)
        return summary
    for split in (FINETUNE_SPLIT, TEST_SPLIT):
        shutil.rmtree(os.path.join(root, split), ignore_errors=True)
    if os.path.exists(marker):
        os.unlink(marker)
    os.makedirs(root, exist_ok=True)

    prompts, dropped = _asterisk_prompts(asterisk_sounds, transcripts, max_duration)
    finetune, test = split_prompts(prompts, finetune_minutes * 60.0, opts.seed)
    jobs = [(p, FINETUNE_SPLIT) for p in finetune] + [(p, TEST_SPLIT) for p in test]

    def decode(job):
        prompt, split = job
        dst = utterance_path(os.path.join(root, split), prompt.uid)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        decode_g722(ffmpeg, prompt.source, dst)
        prompt.duration = sf.info(dst).duration
        return job

    with ThreadPoolExecutor(max_workers=opts.workers or os.cpu_count() or 1) as pool:
        for _ in tqdm(
            pool.map(decode, jobs),
            total=len(jobs),
            desc="decoding Asterisk prompts",
            unit="file",
            disable=not opts.progress,
        ):
            pass
    for split, items in ((FINETUNE_SPLIT, finetune), (TEST_SPLIT, test)):
        write_transcripts(os.path.join(root, split), [(p.uid, p.words) for p in items])
    librivox = build_librivox_split(os.path.join(root, TEST_SPLIT), librivox_dir)

    sources = ["ID\tsplit\tsource\twritten_text"]
    for split, items in (
        (FINETUNE_SPLIT, finetune),
        (TEST_SPLIT, test + librivox),
    ):
        sources += [f"{p.uid}\t{split}\t{p.source}\t{p.raw}" for p in items]
    atomic_write_text(os.path.join(root, "SOURCES.tsv"), "\n".join(sources) + "\n")
    atomic_write_text(os.path.join(root, "ATTRIBUTION.txt"), _ATTRIBUTION)
    minutes = {
        (ASTERISK_SPEAKER, FINETUNE_SPLIT): sum(p.duration for p in finetune) / 60,
        (ASTERISK_SPEAKER, TEST_SPLIT): sum(p.duration for p in test) / 60,
        (LIBRIVOX_SPEAKER, TEST_SPLIT): sum(p.duration for p in librivox) / 60,
    }
    names = {
        ASTERISK_SPEAKER: ("F", "Allison Smith"),
        LIBRIVOX_SPEAKER: ("M", "LibriVox reader, Sense and Sensibility ch. 1"),
    }
    write_speakers(
        os.path.join(root, "SPEAKERS.TXT"),
        [
            (spk, names[spk][0], split, m, names[spk][1])
            for (spk, split), m in minutes.items()
        ],
    )
    report = os.path.join(out, "debian_corpus_report.txt")
    lines = ["# Asterisk prompts left out of the corpus", "# name\treason\ttext"]
    lines += [f"{n}\t{r}\t{t}" for n, r, t in dropped]
    atomic_write_text(report, "\n".join(lines) + "\n")

    summary = {
        "options": recorded,
        "root": os.path.abspath(root),
        "report": os.path.abspath(report),
        "splits": {
            FINETUNE_SPLIT: {
                "utterances": len(finetune),
                "minutes": round(sum(p.duration for p in finetune) / 60, 2),
            },
            TEST_SPLIT: {
                "utterances": len(test) + len(librivox),
                "minutes": round(sum(p.duration for p in test + librivox) / 60, 2),
            },
        },
        "left_out": dict(Counter(reason for _, reason, _ in dropped)),
    }
    atomic_write_text(marker, json.dumps(summary, indent=1) + "\n")
    logger.info(
        "Debian corpus in %s: %s; %d prompts left out (see %s)",
        root,
        summary["splits"],
        len(dropped),
        report,
    )
    return summary
