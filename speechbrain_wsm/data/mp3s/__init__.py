"""Dataset preparations for the MP3S downstream tasks, in their distributed layouts.

- :func:`prepare_commonvoice`: Common Voice (Welsh, Basque ...) ASR
- :func:`prepare_buckeye`: Buckeye conversational ASR (utterance segments)
- :func:`prepare_voxceleb1`: VoxCeleb1 speaker verification (trial list)
- :func:`prepare_iemocap`: IEMOCAP 4-class emotion recognition (session folds)
- :func:`prepare_slurp`: SLURP scenario classification

LibriSpeech itself is :func:`speechbrain_wsm.data.librispeech.prepare_librispeech`.
Every preparation skips bad input, counts it by kind, lists it in a report
beside the manifests and logs one summary line; a missing folder is an error
naming the path and the expected layout. :func:`add_audio_pipeline` reads
the manifests' audio (any rate or format soundfile reads, segments when the
manifest has ``start``/``stop``) as 16 kHz mono; it and :func:`load_audio`
are the project's one audio pipeline, :mod:`speechbrain_wsm.data.audio`.
"""

from ..audio import add_audio_pipeline, load_audio
from ..tokenizers import prepare_tokenizer
from ._common import normalize_words
from .buckeye import prepare_buckeye
from .commonvoice import prepare_commonvoice
from .iemocap import prepare_iemocap
from .slurp import prepare_slurp
from .voxceleb import prepare_voxceleb1

__all__ = [
    "add_audio_pipeline",
    "load_audio",
    "normalize_words",
    "prepare_buckeye",
    "prepare_commonvoice",
    "prepare_iemocap",
    "prepare_slurp",
    "prepare_tokenizer",
    "prepare_voxceleb1",
]
