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

from .build import (
    ASTERISK_SPEAKER,
    FINETUNE_SPLIT,
    LIBRIVOX_CHAPTER,
    LIBRIVOX_SPEAKER,
    TEST_SPLIT,
    build_debian_corpus,
    build_librivox_split,
)
from .cli import main
from .sources import (
    ASTERISK_SOUNDS,
    ASTERISK_TRANSCRIPTS,
    LIBRIVOX_DIR,
    missing_packages,
)
from .texts import (
    Prompt,
    clean_asterisk_prompt,
    prompt_sentences,
    read_asterisk_transcripts,
    read_librivox_transcripts,
    split_prompts,
)

__all__ = [
    "ASTERISK_SOUNDS",
    "ASTERISK_SPEAKER",
    "ASTERISK_TRANSCRIPTS",
    "FINETUNE_SPLIT",
    "LIBRIVOX_CHAPTER",
    "LIBRIVOX_DIR",
    "LIBRIVOX_SPEAKER",
    "TEST_SPLIT",
    "Prompt",
    "build_debian_corpus",
    "build_librivox_split",
    "clean_asterisk_prompt",
    "main",
    "missing_packages",
    "prompt_sentences",
    "read_asterisk_transcripts",
    "read_librivox_transcripts",
    "split_prompts",
]
