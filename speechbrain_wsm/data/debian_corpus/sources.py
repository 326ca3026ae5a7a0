"""The Debian packages' files the real-speech corpus reads, and the G.722 decoder."""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = [
    "ASTERISK_SOUNDS",
    "ASTERISK_TRANSCRIPTS",
    "G722_BYTES_PER_SECOND",
    "LIBRIVOX_DIR",
    "decode_g722",
    "missing_packages",
]

ASTERISK_SOUNDS = "/usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
LIBRIVOX_DIR = "/usr/share/pocketsphinx/test/data/librivox"
#: G.722 is 64 kbit/s: a prompt's duration from its file size.
G722_BYTES_PER_SECOND = 8000


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


def decode_g722(ffmpeg: str, src: str, dst: str) -> None:
    """Decode a G.722 file to 16 kHz mono FLAC with ffmpeg (via ``<dst>.part``).

    Arguments
    ---------
    ffmpeg : str
        Path of the ffmpeg program.
    src : str
        The ``.g722`` file.
    dst : str
        The ``.flac`` to write; its folder must exist.
    """
    tmp = dst + ".part"
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", src]
    cmd += ["-ac", "1", "-ar", "16000", "-sample_fmt", "s16", "-f", "flac", tmp]
    subprocess.run(cmd, check=True, capture_output=True)
    os.replace(tmp, dst)
