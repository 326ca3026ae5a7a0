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

from .build import SPLITS, build_synthetic_corpus
from .cli import main
from .engines import ENGINES, SAMPLE_RATE, missing_packages
from .texts import Sentence, read_bible_verses, read_text_file, split_sentences
from .voices import Speaker, speaker_catalogue

__all__ = [
    "ENGINES",
    "SAMPLE_RATE",
    "SPLITS",
    "Sentence",
    "Speaker",
    "build_synthetic_corpus",
    "main",
    "missing_packages",
    "read_bible_verses",
    "read_text_file",
    "speaker_catalogue",
    "split_sentences",
]
