"""A synthetic training corpus: public-domain text read by many synthetic voices.

No speech corpus can be downloaded here, so the training data is synthesised:
verses of the King James Bible (Debian ``bible-kjv``, public domain) or any
text file are read by flite (5 voices, with pitch, vocal-tract and tempo
variation) and espeak-ng (English accents x voice variants, with speed and
pitch variation), and optionally by hibari-tts (PyPI, one bundled voice).  All
audio is 16 kHz mono FLAC.

A *speaker* is one setting of (engine, voice, variant, pitch, vocal-tract
factor); every speaker belongs to exactly one of train, dev and test, and dev
and test only use voices held out of training (flite's ``awb`` voice and a set
of espeak-ng variants).  Text is split by chapter, so the three splits share no
sentence either.  :func:`build_synthetic_corpus` writes::

    <out>/LibriSpeech/train-synth/<spk>/<chap>/...   --hours of audio (pretraining pool)
    <out>/LibriSpeech/dev-synth/...                  --dev_minutes, unseen voices
    <out>/LibriSpeech/test-synth/...                 --test_minutes, unseen voices
    <out>/LibriSpeech/SPEAKERS.TXT
    <out>/librispeech_finetuning/1h/{0..5}/clean/... labeled folds of --fold_minutes
    <out>/librispeech_finetuning/9h/clean/...        the rest of train-synth
    <out>/synthetic_corpus.json                      summary

The fine-tuning folds are drawn from ``train-synth`` (hard links), as the real
Libri-light limited folds are drawn from LibriSpeech's training set, so
:func:`~speechbrain_wsm.data.librispeech.prepare_librispeech` and
:func:`~speechbrain_wsm.data.librispeech.prepare_librilight_limited` read the
result like the real corpora.  Transcripts are written for every split;
self-supervised pretraining simply does not use them.  Folds keep the names
"10min", "1h" and "10h" but their sizes follow ``--fold_minutes`` (default
10 min, or ``hours * 5`` minutes when ``--hours`` is below 2, so the labeled 1h
set is half the pool).

The output is a deterministic function of the options (``--seed`` included);
an interrupted build resumes where it stopped.  Command line::

    python -m speechbrain_wsm.data.synthetic --out DIR --hours 1 --workers 2 --seed 0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from itertools import count
from multiprocessing import get_context

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ._io import atomic_write_text
from ._layout import utterance_path, write_speakers, write_transcripts
from ._system import MissingPackageError, require_executable
from .librispeech import LIBRILIGHT_FOLDS
from .text import normalize_text

__all__ = [
    "ENGINES",
    "SAMPLE_RATE",
    "Speaker",
    "Sentence",
    "build_synthetic_corpus",
    "missing_packages",
    "read_bible_verses",
    "read_text_file",
    "speaker_catalogue",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Engines and the package that provides each.
ENGINES = {"flite": "flite", "espeak-ng": "espeak-ng", "hibari": "hibari-tts"}
_DEFAULT_WEIGHTS = {"flite": 0.7, "espeak-ng": 0.3, "hibari": 0.2}
SPLITS = {"train": "train-synth", "dev": "dev-synth", "test": "test-synth"}
_SPLIT_CODE = {"train": 0, "dev": 1, "test": 2}

# flite voices and the mean F0 settings (Hz) used as speakers (rms has a fixed F0).
_FLITE_F0 = {
    "kal": (95, 110, 125),
    "kal16": (95, 110, 125),
    "slt": (150, 175, 200),
    "rms": (None,),
    "awb": (90, 110, 130),
}
_FLITE_HELD_OUT = {"awb"}
_TRACT = (0.94, 1.0, 1.06)
_ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Voice variants that sound like a person (no robots, croaks or whispers).
_ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "adam",
    "Andy",
    "anika",
    "Annie",
    "aunty",
    "belinda",
    "benjamin",
    "caleb",
    "david",
    "edward",
    "Gene",
    "grandpa",
    "iven",
    "john",
    "Lee",
    "linda",
    "max",
    "Michael",
    "norbert",
    "paul",
    "quincy",
    "rob",
    "robert",
    "shelby",
    "steph",
    "travis",
    "victor",
    "zac",
)
_ESPEAK_HELD_OUT = {
    "dev": {"m2", "f2", "Andy", "linda", "quincy"},
    "test": {"m6", "f4", "edward", "steph", "caleb"},
}
_ESPEAK_FEMALE = {"f1", "f2", "f3", "f4", "f5", "anika", "Annie", "aunty", "belinda"}
_ESPEAK_FEMALE |= {"linda", "steph"}
_ESPEAK_PITCH = (35, 50, 65)
_BIBLE_RANGE = "Genesis 1:1-Revelation 22:21"


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one engine setting, used in one split only."""

    spk_id: str
    engine: str
    voice: str
    variant: str
    pitch: float | None
    tract: float
    split: str

    @property
    def sex(self) -> str:
        """``"F"`` or ``"M"``: the sex of the underlying voice."""
        if self.engine == "espeak-ng":
            return "F" if self.variant in _ESPEAK_FEMALE else "M"
        return "F" if self.voice in ("slt", "heart") else "M"

    def describe(self) -> str:
        """A one-line description for ``SPEAKERS.TXT``."""
        parts = [self.engine, self.voice]
        if self.variant:
            parts.append(f"+{self.variant}")
        if self.pitch is not None:
            parts.append(f"pitch={self.pitch}")
        parts.append(f"tract={self.tract}")
        return " ".join(parts)


@dataclass(frozen=True)
class Sentence:
    """A line of source text: its chapter (for splitting) and its words."""

    chapter: int
    text: str
    words: str


@dataclass
class _Job:
    uid: str
    path: str
    engine: str
    voice: str
    variant: str
    pitch: float | None
    tract: float
    rate: float
    text: str
    words: str
    seed: tuple


def speaker_catalogue(engines=("flite", "espeak-ng", "hibari")) -> list[Speaker]:
    """Every synthetic speaker, with a stable numeric ID and its split.

    IDs do not depend on which engines are selected or installed.

    Arguments
    ---------
    engines : sequence of str
        Engines to list (names from :data:`ENGINES`).

    Returns
    -------
    list of Speaker
        The catalogue, in ID order.

    Example
    -------
    >>> cat = speaker_catalogue()
    >>> sorted({s.split for s in cat})
    ['dev', 'test', 'train']
    >>> held_out = {s.voice for s in cat if s.engine == "flite" and s.split != "train"}
    >>> held_out
    {'awb'}
    """
    catalogue = []
    next_id = count(1001)
    for voice, f0s in _FLITE_F0.items():
        for i, (f0, tract) in enumerate((f, t) for f in f0s for t in _TRACT):
            split = "train"
            if voice in _FLITE_HELD_OUT:
                split = "dev" if i % 2 == 0 else "test"
            catalogue.append(
                Speaker(str(next(next_id)), "flite", voice, "", f0, tract, split)
            )
    for accent in _ESPEAK_ACCENTS:
        for variant in _ESPEAK_VARIANTS:
            split = "train"
            for held, names in _ESPEAK_HELD_OUT.items():
                if variant in names:
                    split = held
            for pitch in _ESPEAK_PITCH:
                catalogue.append(
                    Speaker(
                        str(next(next_id)),
                        "espeak-ng",
                        accent,
                        variant,
                        pitch,
                        1.0,
                        split,
                    )
                )
    for tract in _TRACT:
        catalogue.append(
            Speaker(str(next(next_id)), "hibari", "heart", "", None, tract, "train")
        )
    return [s for s in catalogue if s.engine in engines]


def missing_packages(engines=("flite", "espeak-ng"), text_file=None) -> list[str]:
    """Packages the builder needs for ``engines`` that are not installed.

    Arguments
    ---------
    engines : sequence of str
        Engines to check.
    text_file : str, optional
        When given, ``bible-kjv`` is not needed.

    Returns
    -------
    list of str
        Debian (or, for hibari, PyPI) package names.

    Example
    -------
    >>> isinstance(missing_packages(), list)
    True
    """
    missing = []
    for engine in engines:
        if engine == "hibari":
            if importlib.util.find_spec("hibari") is None:
                missing.append("hibari-tts")
        elif shutil.which(engine) is None:
            missing.append(ENGINES[engine])
    if text_file is None and shutil.which("bible") is None:
        missing.append("bible-kjv")
    return missing


def _tts_text(text: str) -> str:
    """Text for a synthesiser: upper case words (LORD) would be spelled out."""
    return re.sub(r"\b[A-Z]{2,}\b", lambda m: m.group(0).capitalize(), text)


def read_bible_verses(
    min_words: int = 5, max_words: int = 45, passage: str = _BIBLE_RANGE
) -> list[Sentence]:
    """King James Bible verses from Debian's ``bible-kjv``.

    Arguments
    ---------
    min_words, max_words : int
        Keep verses with this many words (about 2 to 16 s of speech).
    passage : str
        A ``bible -f`` reference range.

    Returns
    -------
    list of Sentence
        One per verse; ``chapter`` numbers chapters across the whole Bible.

    Example
    -------
    >>> import shutil
    >>> if shutil.which("bible"):
    ...     print(read_bible_verses(passage="Genesis 1:3-1:3")[0].words)
    ... else:
    ...     print("AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT")
    AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT
    """
    bible = require_executable("bible", "bible-kjv")
    proc = subprocess.run(
        [bible, "-f", passage], check=True, capture_output=True, text=True
    )
    sentences, chapters = [], {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^(\S+?)(\d+):(\d+)\s+(.*)$", line.strip())
        if not match:
            continue
        book, chap, _, text = match.groups()
        key = (book, chap)
        chapters.setdefault(key, len(chapters) + 1)
        words = normalize_text(text)
        if min_words <= len(words.split()) <= max_words:
            sentences.append(Sentence(chapters[key], _tts_text(text), words))
    return sentences


def read_text_file(
    path: str, min_words: int = 5, max_words: int = 45, lines_per_chapter: int = 50
) -> list[Sentence]:
    """Sentences from a text file, one per line.

    Arguments
    ---------
    path : str
        UTF-8 text, one sentence per line.
    min_words, max_words : int
        Keep lines with this many words.
    lines_per_chapter : int
        Consecutive lines grouped into one chapter (the unit of the split).

    Returns
    -------
    list of Sentence
        The usable lines.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> _ = open(p, "w").write("It is 5 o'clock now, my friend.\\nToo short.\\n")
    >>> [s.words for s in read_text_file(p)]
    ["IT IS FIVE O'CLOCK NOW MY FRIEND"]
    """
    sentences = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            words = normalize_text(line)
            if min_words <= len(words.split()) <= max_words:
                text = line.strip() if not re.search(r"\d", line) else words.lower()
                sentences.append(
                    Sentence(i // lines_per_chapter + 1, _tts_text(text), words)
                )
    return sentences


# --------------------------------------------------------------------------- #
# Synthesis (runs in worker processes)
# --------------------------------------------------------------------------- #

_HIBARI = None


def _run_engine(job: _Job, tmp_dir: str) -> tuple[np.ndarray, int]:
    """Synthesise ``job.text``; float32 mono audio and its sample rate."""
    if job.engine == "hibari":
        global _HIBARI
        if _HIBARI is None:
            from hibari import Hibari

            _HIBARI = Hibari(voice=job.voice, threads=1)
        seed = int(np.random.SeedSequence(job.seed).generate_state(1)[0])
        audio = _HIBARI(job.text, speed=job.rate, seed=seed)
        return np.asarray(audio, dtype=np.float32), int(_HIBARI.sample_rate)
    wav = os.path.join(tmp_dir, "tts.wav")
    if job.engine == "flite":
        cmd = ["flite", "-voice", job.voice, "--setf", f"duration_stretch={job.rate}"]
        if job.pitch is not None:
            cmd += ["--setf", f"int_f0_target_mean={job.pitch}"]
        cmd += ["-t", job.text, "-o", wav]
        subprocess.run(cmd, check=True, capture_output=True)
    elif job.engine == "espeak-ng":
        voice = f"{job.voice}+{job.variant}"
        speed = str(round(175 / job.rate))
        cmd = ["espeak-ng", "-v", voice, "-s", speed, "-p", str(job.pitch), "-w", wav]
        subprocess.run(cmd, check=True, capture_output=True, input=job.text, text=True)
    else:
        raise ValueError(f"unknown engine {job.engine!r}; valid: {sorted(ENGINES)}")
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def _to_16k(audio: np.ndarray, rate: int, tract: float) -> np.ndarray:
    """Resample to 16 kHz; ``tract`` != 1 also scales pitch and formants.

    Reading audio recorded at ``rate`` as if it were at ``rate * tract`` moves
    every frequency by ``tract`` (and the tempo by the same factor), a cheap
    change of apparent vocal-tract length.
    """
    from scipy.signal import resample_poly

    ratio = Fraction(SAMPLE_RATE, 1) / (
        Fraction(rate) * Fraction(tract).limit_denominator(100)
    )
    ratio = ratio.limit_denominator(1000)
    if ratio == 1:
        return audio
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def _synthesize(job: _Job) -> tuple[str, int]:
    """Produce one FLAC file (or reuse a finished one); return (uid, frames)."""
    if os.path.isfile(job.path):
        try:
            return job.uid, sf.info(job.path).frames
        except (sf.LibsndfileError, RuntimeError):
            os.unlink(job.path)
    rng = np.random.default_rng(np.random.SeedSequence(job.seed))
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        audio, rate = _run_engine(job, tmp)
    audio = _to_16k(audio, rate, job.tract)
    pads = rng.uniform(0.05, 0.3, size=2)
    audio = np.concatenate(
        [
            np.zeros(int(pads[0] * SAMPLE_RATE), np.float32),
            audio,
            np.zeros(int(pads[1] * SAMPLE_RATE), np.float32),
        ]
    )
    peak = float(np.max(np.abs(audio))) or 1.0
    audio = audio * (rng.uniform(0.3, 0.9) / peak)
    noise_db = rng.uniform(-65.0, -45.0)
    audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * 10 ** (
        noise_db / 20
    )
    audio = np.clip(audio, -1.0, 1.0)
    os.makedirs(os.path.dirname(job.path), exist_ok=True)
    tmp_path = job.path + ".part"
    sf.write(tmp_path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp_path, job.path)
    return job.uid, len(audio)


# --------------------------------------------------------------------------- #
# Planning and driving
# --------------------------------------------------------------------------- #


def _split_sentences(sentences: list[Sentence], seed: int) -> dict[str, list[Sentence]]:
    """Assign whole chapters to dev (5 %), test (5 %) and train (the rest)."""
    chapters = sorted({s.chapter for s in sentences})
    if len(chapters) < 3:
        raise ValueError(
            f"the text source is too small: {len(chapters)} chapter(s), need at "
            "least three (train, dev and test take whole chapters)"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(chapters))
    n_eval = max(1, round(0.05 * len(chapters)))
    where = {}
    for rank, i in enumerate(order):
        split = "dev" if rank < n_eval else "test" if rank < 2 * n_eval else "train"
        where[chapters[i]] = split
    pools: dict[str, list[Sentence]] = {"train": [], "dev": [], "test": []}
    for s in sentences:
        pools[where[s.chapter]].append(s)
    return pools


def _choose_speakers(
    catalogue: list[Speaker], split: str, weights: dict, n: int, seed: int
) -> list[Speaker]:
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 11])
    chosen = []
    total = sum(weights.values())
    for engine, weight in weights.items():
        pool = [s for s in catalogue if s.engine == engine and s.split == split]
        if not pool:
            continue
        k = min(len(pool), max(1, round(n * weight / total)))
        picks = rng.choice(len(pool), size=k, replace=False)
        chosen += [pool[i] for i in sorted(picks)]
    if not chosen:
        raise ValueError(
            f"no speaker of the engines {sorted(weights)} belongs to {split!r}: "
            "dev and test voices come from flite and espeak-ng; select one of them"
        )
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def _jobs(root: str, split: str, speakers, sentences, seed: int):
    """The endless, deterministic sequence of utterances of one split."""
    code = _SPLIT_CODE[split]
    order = np.random.default_rng([seed, code, 13]).permutation(len(sentences))
    folder = os.path.join(root, SPLITS[split])
    for k in count():
        if k == len(sentences):
            logger.warning(
                "%s: all %d sentences used; reading them again with other voices",
                SPLITS[split],
                len(sentences),
            )
        sentence = sentences[order[k % len(sentences)]]
        spk = speakers[k % len(speakers)]
        rng = np.random.default_rng([seed, code, k])
        if spk.engine == "flite":
            rate = round(float(rng.uniform(0.9, 1.15)), 3)
            pitch = (
                None
                if spk.pitch is None
                else round(spk.pitch * rng.uniform(0.95, 1.05))
            )
        elif spk.engine == "espeak-ng":
            rate = round(float(rng.uniform(0.9, 1.2)), 3)
            pitch = int(np.clip(spk.pitch + rng.integers(-5, 6), 0, 99))
        else:
            rate = round(float(rng.uniform(0.9, 1.1)), 3)
            pitch = None
        uid = f"{spk.spk_id}-{sentence.chapter}-{k:04d}"
        yield _Job(
            uid=uid,
            path=utterance_path(folder, uid),
            engine=spk.engine,
            voice=spk.voice,
            variant=spk.variant,
            pitch=pitch,
            tract=spk.tract,
            rate=rate,
            text=sentence.text,
            words=sentence.words,
            seed=(seed, code, k),
        )


class _Inline:
    """A stand-in for a process pool that runs jobs in this process."""

    def submit(self, fn, *args):
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _synthesize_split(pool, jobs, target_seconds: float, window: int, bar) -> list:
    """Run jobs in order until their audio reaches ``target_seconds``.

    Returns the kept ``(job, frames)`` pairs: always a prefix of ``jobs``, so the
    result does not depend on the number of workers.
    """
    kept, total = [], 0.0
    pending: deque = deque()
    jobs = iter(jobs)
    while total < target_seconds:
        while len(pending) < window:
            job = next(jobs)
            pending.append((job, pool.submit(_synthesize, job)))
        job, future = pending.popleft()
        _, frames = future.result()
        kept.append((job, frames))
        total += frames / SAMPLE_RATE
        bar.update(frames / SAMPLE_RATE)
    for job, future in pending:
        if not future.cancel():
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the file is removed either way
                pass
        if os.path.exists(job.path):
            os.unlink(job.path)
    return kept


def _link(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _remove_strays(folder: str, keep: set[str]) -> None:
    """Delete audio left by an interrupted build that is not part of the corpus."""
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith((".flac", ".part")) and name.split(".")[0] not in keep:
                os.unlink(os.path.join(root, name))


def build_synthetic_corpus(
    out: str,
    hours: float = 1.0,
    dev_minutes: float = 5.0,
    test_minutes: float = 5.0,
    fold_minutes: float | None = None,
    engines=("flite", "espeak-ng"),
    engine_weights: dict | None = None,
    train_speakers: int = 40,
    eval_speakers: int = 8,
    text_file: str | None = None,
    workers: int | None = None,
    seed: int = 0,
    progress: bool = True,
    redo: bool = False,
) -> dict:
    """Synthesise the corpus described in the module docstring.

    Arguments
    ---------
    out : str
        Output folder.
    hours : float
        Audio in ``train-synth`` (the pretraining pool), in hours.
    dev_minutes, test_minutes : float
        Audio in ``dev-synth`` and ``test-synth``.
    fold_minutes : float, optional
        Audio per Libri-light style fold (6 folds make "1h"); default 10, or
        ``hours * 5`` when ``hours < 2``.  The "9h" part takes the rest of the
        pool, up to 54 folds' worth.
    engines : sequence of str
        Synthesisers: ``"flite"``, ``"espeak-ng"``, ``"hibari"``.
    engine_weights : dict, optional
        Share of speakers per engine (default flite 0.7, espeak-ng 0.3,
        hibari 0.2, renormalised over ``engines``).
    train_speakers, eval_speakers : int
        Number of speakers in train, and in each of dev and test.
    text_file : str, optional
        Sentences, one per line; default: the King James Bible (bible-kjv).
    workers : int, optional
        Synthesis processes (default: number of CPUs); 1 runs in-process.
    seed : int
        Seed of every random choice.
    progress : bool
        Show progress bars (seconds of audio produced).
    redo : bool
        Rebuild even if a finished corpus with the same options exists.

    Returns
    -------
    dict
        Summary: options, per split utterances / minutes / speakers, fold
        minutes, wall time.

    Raises
    ------
    MissingPackageError
        Naming the package to install for a selected engine or the text.

    Example
    -------
    From Python (about 20 s on two cores)::

        summary = build_synthetic_corpus("corpora/synth", hours=1.0, workers=2)
        summary["splits"]["train-synth"]["minutes"]  # about 60
    """
    start = time.time()
    engines = tuple(dict.fromkeys(engines))
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise ValueError(f"unknown engines {sorted(unknown)}; valid: {sorted(ENGINES)}")
    for engine in engines:
        if engine == "hibari":
            if importlib.util.find_spec("hibari") is None:
                raise MissingPackageError(
                    "hibari-tts", "the hibari engine is not importable", pip=True
                )
        else:
            require_executable(engine, ENGINES[engine])
    if fold_minutes is None:
        fold_minutes = 10.0 if hours >= 2 else hours * 5.0
    weights = {e: (engine_weights or _DEFAULT_WEIGHTS)[e] for e in engines}
    options = {
        "hours": hours,
        "dev_minutes": dev_minutes,
        "test_minutes": test_minutes,
        "fold_minutes": fold_minutes,
        "engines": list(engines),
        "engine_weights": weights,
        "train_speakers": train_speakers,
        "eval_speakers": eval_speakers,
        "text_file": os.path.abspath(text_file) if text_file else None,
        "seed": seed,
    }
    root = os.path.join(out, "LibriSpeech")
    ft_root = os.path.join(out, "librispeech_finetuning")
    summary_path = os.path.join(out, "synthetic_corpus.json")
    partial_path = os.path.join(out, ".synthetic_partial.json")
    if not redo and os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
        if summary.get("options") == options:
            logger.info("synthetic corpus already built in %s", out)
            return summary
    resumable = False
    if not redo and os.path.isfile(partial_path):
        with open(partial_path, encoding="utf-8") as f:
            resumable = json.load(f) == options
    if not resumable:
        for folder in [os.path.join(root, s) for s in SPLITS.values()] + [ft_root]:
            shutil.rmtree(folder, ignore_errors=True)
    if os.path.exists(summary_path):
        os.unlink(summary_path)
    os.makedirs(root, exist_ok=True)
    atomic_write_text(partial_path, json.dumps(options, indent=1))

    sentences = read_text_file(text_file) if text_file else read_bible_verses()
    pools = _split_sentences(sentences, seed)
    catalogue = speaker_catalogue(engines)
    targets = {
        "train": hours * 3600,
        "dev": dev_minutes * 60,
        "test": test_minutes * 60,
    }
    n_workers = workers or os.cpu_count() or 1
    pool = (
        _Inline()
        if n_workers == 1
        else ProcessPoolExecutor(n_workers, mp_context=get_context("spawn"))
    )
    kept: dict[str, list] = {}
    used_speakers: dict[str, list[Speaker]] = {}
    try:
        for split in ("dev", "test", "train"):
            n = train_speakers if split == "train" else eval_speakers
            speakers = _choose_speakers(catalogue, split, weights, n, seed)
            used_speakers[split] = speakers
            jobs = _jobs(root, split, speakers, pools[split], seed)
            with tqdm(
                total=round(targets[split]),
                desc=f"synthesising {SPLITS[split]}",
                unit="s",
                disable=not progress,
                bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s audio [{elapsed}<{remaining}]",
            ) as bar:
                kept[split] = _synthesize_split(
                    pool, jobs, targets[split], 4 * n_workers, bar
                )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    for split, items in kept.items():
        folder = os.path.join(root, SPLITS[split])
        _remove_strays(folder, {job.uid for job, _ in items})
        write_transcripts(folder, [(job.uid, job.words) for job, _ in items])
    folds = _write_folds(ft_root, kept["train"], fold_minutes * 60)

    seconds: Counter = Counter()
    for split, items in kept.items():
        for job, frames in items:
            seconds[(job.uid.split("-")[0], split)] += frames / SAMPLE_RATE
    by_id = {s.spk_id: s for s in catalogue}
    write_speakers(
        os.path.join(root, "SPEAKERS.TXT"),
        [
            (spk, by_id[spk].sex, SPLITS[split], secs / 60, by_id[spk].describe())
            for (spk, split), secs in sorted(seconds.items())
        ],
    )
    summary = {
        "options": options,
        "root": os.path.abspath(root),
        "finetuning_root": os.path.abspath(ft_root),
        "splits": {
            SPLITS[split]: {
                "utterances": len(items),
                "minutes": round(sum(f for _, f in items) / SAMPLE_RATE / 60, 2),
                "speakers": len({job.uid.split("-")[0] for job, _ in items}),
            }
            for split, items in kept.items()
        },
        "folds_minutes": folds,
        "wall_seconds": round(time.time() - start, 1),
    }
    atomic_write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    os.unlink(partial_path)
    logger.info("synthetic corpus in %s: %s", out, summary["splits"])
    return summary


def _write_folds(ft_root: str, train: list, fold_seconds: float) -> dict:
    """Hard-link train utterances into ``1h/{0..5}/clean`` and ``9h/clean``.

    The six ``1h`` folds take ``fold_seconds`` each, ``9h`` the rest of the pool
    up to 54 folds' worth; every fold gets at least one utterance.
    """
    shutil.rmtree(ft_root, ignore_errors=True)
    n_folds = len(LIBRILIGHT_FOLDS)
    if len(train) < n_folds:
        raise ValueError(
            f"train-synth has {len(train)} utterances, fewer than the "
            f"{n_folds} Libri-light folds; raise --hours"
        )
    assignment: list[list] = []
    i = 0
    for fold in range(n_folds):
        budget = fold_seconds * (54 if fold == n_folds - 1 else 1)
        reserve = n_folds - 1 - fold
        items, used = [], 0.0
        while i < len(train) - reserve and (not items or used < budget):
            items.append(train[i])
            used += train[i][1] / SAMPLE_RATE
            i += 1
        assignment.append(items)
    minutes = {}
    for name, items in zip(LIBRILIGHT_FOLDS, assignment, strict=True):
        folder = os.path.join(ft_root, name, "clean")
        for job, _ in items:
            _link(job.path, utterance_path(folder, job.uid))
        write_transcripts(folder, [(job.uid, job.words) for job, _ in items])
        minutes[name] = round(sum(f for _, f in items) / SAMPLE_RATE / 60, 2)
    return minutes


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.data.synthetic",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--hours", type=float, default=1.0, help="train-synth hours")
    parser.add_argument("--dev_minutes", type=float, default=5.0)
    parser.add_argument("--test_minutes", type=float, default=5.0)
    parser.add_argument("--fold_minutes", type=float, default=None)
    parser.add_argument(
        "--engines",
        default="flite,espeak-ng",
        help="comma list: flite,espeak-ng,hibari",
    )
    parser.add_argument("--train_speakers", type=int, default=40)
    parser.add_argument("--eval_speakers", type=int, default=8)
    parser.add_argument("--text", default=None, help="text file, one sentence a line")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        summary = build_synthetic_corpus(
            args.out,
            hours=args.hours,
            dev_minutes=args.dev_minutes,
            test_minutes=args.test_minutes,
            fold_minutes=args.fold_minutes,
            engines=[e.strip() for e in args.engines.split(",") if e.strip()],
            train_speakers=args.train_speakers,
            eval_speakers=args.eval_speakers,
            text_file=args.text,
            workers=args.workers,
            seed=args.seed,
            progress=not args.no_progress,
            redo=args.redo,
        )
    except MissingPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "options"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
