"""Dataset preparations for the MP3S downstream tasks, in their distributed layouts.

- :func:`prepare_commonvoice`: Common Voice (Welsh, Basque ...) ASR
- :func:`prepare_buckeye`: Buckeye conversational ASR (utterance segments)
- :func:`prepare_voxceleb1`: VoxCeleb1 speaker verification (trial list)
- :func:`prepare_iemocap`: IEMOCAP 4-class emotion recognition (session folds)
- :func:`prepare_slurp`: SLURP scenario classification

LibriSpeech itself is :func:`speechbrain_wsm.data.librispeech.prepare_librispeech`.
Every preparation skips bad input, counts it by kind, lists it in a report
beside the manifests and logs one summary line; a missing folder is an error
naming the path and the expected layout.
:func:`speechbrain_wsm.data.audio.add_audio_pipeline` reads the manifests'
audio (any rate or format soundfile reads, segments when the manifest has
``start``/``stop``) as 16 kHz mono, and
:func:`speechbrain_wsm.data.tokenizers.prepare_tokenizer` makes their units.
"""

from ._common import normalize_words
from .buckeye import prepare_buckeye
from .commonvoice import prepare_commonvoice
from .iemocap import prepare_iemocap
from .slurp import prepare_slurp
from .voxceleb import prepare_voxceleb1

__all__ = [
    "normalize_words",
    "prepare_buckeye",
    "prepare_commonvoice",
    "prepare_iemocap",
    "prepare_slurp",
    "prepare_voxceleb1",
]
