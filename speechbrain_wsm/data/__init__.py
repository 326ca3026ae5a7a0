"""Dataset preparation: LibriSpeech and Libri-light manifests, offline corpora, units.

- :mod:`.librispeech`: :func:`prepare_librispeech`, :func:`prepare_librilight_limited`
- :mod:`.debian_corpus`: real speech from Debian packages (Asterisk, LibriVox)
- :mod:`.synthetic`: a synthetic LibriSpeech-layout training corpus
- :mod:`.text`: LibriSpeech-style transcript normalisation
- :mod:`.tokenizers`: character and sentencepiece units with the CTC blank at 0
- :mod:`.lm`: word n-gram LMs (KenLM ``lmplz``) and lexicons for CTC decoding

See ``README.md`` in this folder.
"""

from .librispeech import prepare_librilight_limited, prepare_librispeech
from .text import normalize_text
from .tokenizers import (
    load_tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
)

__all__ = [
    "load_tokenizer",
    "normalize_text",
    "prepare_librilight_limited",
    "prepare_librispeech",
    "train_bpe_tokenizer",
    "train_char_tokenizer",
]
