"""A small real-speech corpus built from Debian packages, in the LibriSpeech layout.

Sources (nothing is installed or downloaded here; see ``README.md`` beside this
file for attribution and licences):

- ``asterisk-core-sounds-en-g722``: the Asterisk IVR prompts recorded by Allison
  Smith, G.722 wideband (true 16 kHz after ``ffmpeg -f g722``), CC-BY-SA-3.0;
- ``asterisk-core-sounds-en``: their transcripts, ``core-sounds-en.txt.gz``;
- ``pocketsphinx-testdata``: five LibriVox utterances of *Sense and
  Sensibility* (public domain) with a transcription file.

:func:`build_debian_corpus` writes::

    <out>/LibriSpeech/train-real-10min/10001/<chapter>/...   about 10 min
    <out>/LibriSpeech/test-real/10001/<chapter>/...          the other prompts
    <out>/LibriSpeech/test-real/10002/1/...                  the LibriVox reader
    <out>/LibriSpeech/SPEAKERS.TXT, SOURCES.tsv, ATTRIBUTION.txt
    <out>/debian_corpus_report.txt                           prompts left out

Transcripts are normalised (:func:`~speechbrain_wsm.data.text.normalize_text`).
Prompts are left out, and listed in the report, when they are not speech
(tones, silence), when their transcript carries a note about the recording,
names a web address, or holds a number of three or more digits, a letter-digit
code or an acronym that may be read as a word (readings that cannot be
checked), and when they are longer than ``max_duration``.  The fine-tuning
and test sets share no sentence: prompts that share one are kept together.

Command line::

    python -m speechbrain_wsm.data.debian_corpus --out DIR [--finetune_minutes 10]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ._io import atomic_write_text
from ._layout import utterance_path, write_speakers, write_transcripts
from ._system import MissingPackageError, require_executable, require_path
from .text import normalize_text

__all__ = [
    "ASTERISK_SOUNDS",
    "ASTERISK_TRANSCRIPTS",
    "LIBRIVOX_DIR",
    "FINETUNE_SPLIT",
    "TEST_SPLIT",
    "Prompt",
    "build_debian_corpus",
    "build_librivox_split",
    "clean_asterisk_prompt",
    "missing_packages",
    "read_asterisk_transcripts",
    "read_librivox_transcripts",
    "split_prompts",
]

logger = logging.getLogger(__name__)

ASTERISK_SOUNDS = "/usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
LIBRIVOX_DIR = "/usr/share/pocketsphinx/test/data/librivox"

FINETUNE_SPLIT = "train-real-10min"
TEST_SPLIT = "test-real"
ASTERISK_SPEAKER = "10001"
LIBRIVOX_SPEAKER = "10002"
LIBRIVOX_CHAPTER = "1"
_G722_BYTES_PER_SECOND = 8000  # 64 kbit/s
# Chapter numbers for the prompt folders; other folders are numbered after these.
_CHAPTERS = ("", "dictate", "digits", "followme", "letters", "phonetic")
# Spelling slips in core-sounds-en.txt, fixed to the words that are spoken.
_CORRECTIONS = {
    "umute": "unmute",
    "un-indentified": "unidentified",
    "witheld": "withheld",
    "exclaimation": "exclamation",
    "fourtieth": "fortieth",
    "thru": "through",
    "represenatives": "representatives",
}
# Upper case acronyms that are spelled letter by letter; any other one (SIP,
# IAX, DAHDI: often said as words) makes the reading uncertain.
_SPELLED_ACRONYMS = {"PBX", "USB", "MGCP"}
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")
_CORRECTION_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in _CORRECTIONS) + r")\b", re.IGNORECASE
)
_ALL_ANNOTATION = re.compile(r"^\s*[\[(<].*[\])>]\s*$")
_URL = re.compile(r"\bwww\b|\w+\.(?:org|com|net)\b|@\w", re.IGNORECASE)
_LONG_NUMBER = re.compile(r"\d{3,}|\d[.,]\d")
_LETTER_DIGIT = re.compile(r"[A-Za-z]\d|\d[A-Za-z]|[A-Za-z]\.\d")


@dataclass
class Prompt:
    """One utterance of the corpus before it is written."""

    uid: str
    words: str
    source: str
    duration: float
    raw: str = ""


def missing_packages(
    asterisk_sounds: str = ASTERISK_SOUNDS,
    asterisk_transcripts: str = ASTERISK_TRANSCRIPTS,
    librivox_dir: str = LIBRIVOX_DIR,
) -> list[str]:
    """Debian packages the builder needs that are not installed.

    Arguments
    ---------
    asterisk_sounds, asterisk_transcripts, librivox_dir : str
        Where the packages' files are looked for.

    Returns
    -------
    list of str
        Package names, empty when everything is there.

    Example
    -------
    >>> isinstance(missing_packages(), list)
    True
    """
    missing = []
    if not os.path.isdir(asterisk_sounds):
        missing.append("asterisk-core-sounds-en-g722")
    if not os.path.isfile(asterisk_transcripts):
        missing.append("asterisk-core-sounds-en")
    if not os.path.isfile(os.path.join(librivox_dir, "transcription")):
        missing.append("pocketsphinx-testdata")
    if shutil.which("ffmpeg") is None:
        missing.append("ffmpeg")
    return missing


def read_asterisk_transcripts(path: str = ASTERISK_TRANSCRIPTS) -> dict[str, str]:
    """Read ``core-sounds-en.txt`` (optionally gzipped): prompt name to text.

    Arguments
    ---------
    path : str
        The transcript file; lines ``name: text``, ``;`` comments.

    Returns
    -------
    dict
        ``{"digits/1": "one", ...}``; a name repeated later wins.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> _ = open(p, "w").write("; comment\\nhello-world: Hello world.\\n")
    >>> read_asterisk_transcripts(p)
    {'hello-world': 'Hello world.'}
    """
    require_path(path, "asterisk-core-sounds-en", "Asterisk prompt transcripts")
    opener = gzip.open if path.endswith(".gz") else open
    prompts = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            prompts[name.strip()] = text.strip()
    return prompts


def clean_asterisk_prompt(name: str, text: str) -> tuple[str | None, str]:
    """Normalise one Asterisk prompt transcript, or say why it is left out.

    Arguments
    ---------
    name : str
        Prompt name, e.g. ``"vm-intro"`` or ``"digits/7"``.
    text : str
        Its line in ``core-sounds-en.txt``.

    Returns
    -------
    words : str or None
        The normalised transcript, ``None`` when left out.
    reason : str
        ``"ok"`` or why it was left out (``non_speech``, ``annotated``,
        ``web_address``, ``ambiguous_number``, ``ambiguous_acronym``,
        ``empty``).

    Example
    -------
    >>> clean_asterisk_prompt("vm-next", "Press 6 to play the next message.")
    ('PRESS SIX TO PLAY THE NEXT MESSAGE', 'ok')
    >>> clean_asterisk_prompt("letters/at", "at [@]")
    ('AT', 'ok')
    >>> clean_asterisk_prompt("beep", "[this is a simple beep tone]")
    (None, 'non_speech')
    >>> clean_asterisk_prompt("x", "dial 500 now")
    (None, 'ambiguous_number')
    """
    if name.startswith("silence/") or _ALL_ANNOTATION.match(text):
        return None, "non_speech"
    if "(" in text or "<" in text:
        return None, "annotated"
    text = re.sub(r"\[[^\]]*\]", " ", text)
    if _URL.search(text):
        return None, "web_address"
    if _LONG_NUMBER.search(text) or _LETTER_DIGIT.search(text):
        return None, "ambiguous_number"
    acronyms = set(_ACRONYM.findall(text))
    if acronyms - _SPELLED_ACRONYMS:
        return None, "ambiguous_acronym"
    text = _ACRONYM.sub(lambda m: " ".join(m.group(0)), text)
    text = _CORRECTION_RE.sub(lambda m: _CORRECTIONS[m.group(0).lower()], text)
    words = normalize_text(text)
    if not words:
        return None, "empty"
    return words, "ok"


def read_librivox_transcripts(folder: str = LIBRIVOX_DIR) -> list[tuple[str, str]]:
    """Read pocketsphinx's LibriVox ``transcription`` file.

    Arguments
    ---------
    folder : str
        The folder holding ``transcription`` and the ``.wav`` files.

    Returns
    -------
    list of (str, str)
        ``(file stem, normalised transcript)`` pairs in file order.

    Example
    -------
    >>> import os
    >>> if os.path.isdir(LIBRIVOX_DIR):
    ...     print(read_librivox_transcripts()[1][1])
    ... else:
    ...     print("HE WAS NOT AN ILL DISPOSED YOUNG MAN")
    HE WAS NOT AN ILL DISPOSED YOUNG MAN
    """
    path = require_path(
        os.path.join(folder, "transcription"),
        "pocketsphinx-testdata",
        "LibriVox test transcriptions",
    )
    items = []
    line_re = re.compile(r"^(?:<s>)?(.*?)(?:</s>)?\s*\(([^()]+)\)\s*$")
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = line_re.match(line.strip())
            if match:
                items.append((match.group(2).strip(), normalize_text(match.group(1))))
    return items


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
        dst = utterance_path(split_dir, uid)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        _write_flac(dst, audio, rate)
        written.append(Prompt(uid, words, src, len(audio) / rate))
    write_transcripts(split_dir, [(p.uid, p.words) for p in written])
    return written


def _write_flac(path: str, audio: np.ndarray, rate: int) -> None:
    tmp = path + ".part"
    sf.write(tmp, audio, rate, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def _decode_g722(ffmpeg: str, src: str, dst: str) -> None:
    tmp = dst + ".part"
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", src]
    cmd += ["-ac", "1", "-ar", "16000", "-sample_fmt", "s16", "-f", "flac", tmp]
    subprocess.run(cmd, check=True, capture_output=True)
    os.replace(tmp, dst)


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
        duration = os.path.getsize(audio[name]) / _G722_BYTES_PER_SECOND
        if words is not None and duration > max_duration:
            words, reason = None, "too_long"
        if words is None:
            dropped.append((name, reason, transcripts[name]))
            continue
        kept.append(Prompt(uid, words, audio[name], duration, transcripts[name]))
    return kept, dropped


def _sentences(prompt: Prompt) -> set[str]:
    parts = re.split(r"[.!?;:]+|\.\.\.", prompt.raw) if prompt.raw else [prompt.words]
    found = {normalize_text(p) for p in parts}
    found.add(prompt.words)
    return {s for s in found if s}


def split_prompts(
    prompts: list[Prompt], finetune_seconds: float, seed: int = 0
) -> tuple[list[Prompt], list[Prompt]]:
    """Split prompts into a fine-tuning and a test set sharing no sentence.

    Prompts sharing a sentence (or their whole text) form one group; groups are
    shuffled with ``seed`` and taken into the fine-tuning set until it reaches
    ``finetune_seconds``.

    Arguments
    ---------
    prompts : list of Prompt
        Candidate utterances (``raw`` holds the written text, if any).
    finetune_seconds : float
        Target fine-tuning set duration.
    seed : int
        Shuffling seed.

    Returns
    -------
    finetune, test : list of Prompt
        Both sorted by ID.

    Example
    -------
    >>> ps = [Prompt(f"1-1-{i:04d}", w, "", 2.0) for i, w in
    ...       enumerate(["HELLO", "HELLO", "GOOD BYE", "THANK YOU", "AGAIN"])]
    >>> ft, te = split_prompts(ps, 4.0)
    >>> {p.words for p in ft} & {p.words for p in te}
    set()
    """
    parent = list(range(len(prompts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, prompt in enumerate(prompts):
        for sentence in _sentences(prompt):
            if sentence in owner:
                parent[find(i)] = find(owner[sentence])
            else:
                owner[sentence] = i
    groups: dict[int, list[Prompt]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[find(i)].append(prompt)
    ordered = sorted(groups.values(), key=lambda g: min(p.uid for p in g))
    random.Random(seed).shuffle(ordered)
    finetune, test, total = [], [], 0.0
    for group in ordered:
        length = sum(p.duration for p in group)
        if total < finetune_seconds and total + length <= finetune_seconds + 15.0:
            finetune.extend(group)
            total += length
        else:
            test.extend(group)
    return sorted(finetune, key=lambda p: p.uid), sorted(test, key=lambda p: p.uid)


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
    seed: int = 0,
    workers: int | None = None,
    asterisk_sounds: str = ASTERISK_SOUNDS,
    asterisk_transcripts: str = ASTERISK_TRANSCRIPTS,
    librivox_dir: str = LIBRIVOX_DIR,
    progress: bool = True,
    redo: bool = False,
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
    seed : int
        Seed of the fine-tuning / test split.
    workers : int, optional
        Parallel ffmpeg decoders (default: number of CPUs).
    asterisk_sounds : str
        Folder of the ``.g722`` prompts.
    asterisk_transcripts : str
        ``core-sounds-en.txt`` or ``.txt.gz``.
    librivox_dir : str
        pocketsphinx-testdata's LibriVox folder.
    progress : bool
        Show a progress bar.
    redo : bool
        Build again even if a finished corpus with the same options exists.

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
    ffmpeg = require_executable("ffmpeg", "ffmpeg")
    require_path(
        asterisk_sounds, "asterisk-core-sounds-en-g722", "Asterisk G.722 prompts"
    )
    transcripts = read_asterisk_transcripts(asterisk_transcripts)
    read_librivox_transcripts(librivox_dir)

    root = os.path.join(out, "LibriSpeech")
    marker = os.path.join(root, ".debian_corpus.json")
    options = {
        "finetune_minutes": finetune_minutes,
        "max_duration": max_duration,
        "seed": seed,
        "asterisk_sounds": os.path.abspath(asterisk_sounds),
        "asterisk_transcripts": os.path.abspath(asterisk_transcripts),
        "librivox_dir": os.path.abspath(librivox_dir),
    }
    if not redo and os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            summary = json.load(f)
        if summary.get("options") == options:
            logger.info("Debian corpus already built in %s", root)
            return summary
    for split in (FINETUNE_SPLIT, TEST_SPLIT):
        shutil.rmtree(os.path.join(root, split), ignore_errors=True)
    if os.path.exists(marker):
        os.unlink(marker)
    os.makedirs(root, exist_ok=True)

    prompts, dropped = _asterisk_prompts(asterisk_sounds, transcripts, max_duration)
    finetune, test = split_prompts(prompts, finetune_minutes * 60.0, seed)
    jobs = [(p, FINETUNE_SPLIT) for p in finetune] + [(p, TEST_SPLIT) for p in test]

    def decode(job):
        prompt, split = job
        dst = utterance_path(os.path.join(root, split), prompt.uid)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        _decode_g722(ffmpeg, prompt.source, dst)
        prompt.duration = sf.info(dst).duration
        return job

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in tqdm(
            pool.map(decode, jobs),
            total=len(jobs),
            desc="decoding Asterisk prompts",
            unit="file",
            disable=not progress,
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
        "options": options,
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


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.data.debian_corpus",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--finetune_minutes", type=float, default=10.0)
    parser.add_argument("--max_duration", type=float, default=35.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--asterisk_sounds", default=ASTERISK_SOUNDS)
    parser.add_argument("--asterisk_transcripts", default=ASTERISK_TRANSCRIPTS)
    parser.add_argument("--librivox", default=LIBRIVOX_DIR)
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        summary = build_debian_corpus(
            args.out,
            finetune_minutes=args.finetune_minutes,
            max_duration=args.max_duration,
            seed=args.seed,
            workers=args.workers,
            asterisk_sounds=args.asterisk_sounds,
            asterisk_transcripts=args.asterisk_transcripts,
            librivox_dir=args.librivox,
            progress=not args.no_progress,
            redo=args.redo,
        )
    except MissingPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("root", "splits", "left_out")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
