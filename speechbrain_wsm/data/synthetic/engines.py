"""The synthesisers (flite, espeak-ng, hibari-tts) and the making of one utterance.

:func:`synthesize` runs in worker processes: it reads one :class:`Job` with its
engine, resamples to 16 kHz (through a vocal-tract factor), adds silences, a
random level and faint noise, and writes FLAC.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf

from .._layout import write_flac
from .._system import MissingPackageError, require_executable

__all__ = [
    "ENGINES",
    "SAMPLE_RATE",
    "Job",
    "missing_packages",
    "require_engines",
    "synthesize",
]

SAMPLE_RATE = 16000
#: Engines and the package that provides each.
ENGINES = {"flite": "flite", "espeak-ng": "espeak-ng", "hibari": "hibari-tts"}


@dataclass
class Job:
    """One utterance to synthesise: the speaker's setting, the text, where it goes."""

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


def require_engines(engines) -> None:
    """Raise :class:`MissingPackageError` naming the package of a missing engine.

    Arguments
    ---------
    engines : sequence of str
        Engine names from :data:`ENGINES`.

    Example
    -------
    >>> require_engines(())
    """
    for engine in engines:
        if engine == "hibari":
            if importlib.util.find_spec("hibari") is None:
                raise MissingPackageError(
                    "hibari-tts", "the hibari engine is not importable", pip=True
                )
        else:
            require_executable(engine, ENGINES[engine])


_HIBARI = None


def _run_engine(job: Job, tmp_dir: str) -> tuple[np.ndarray, int]:
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


def synthesize(job: Job) -> tuple[str, int]:
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
    write_flac(job.path, audio, SAMPLE_RATE)
    return job.uid, len(audio)
