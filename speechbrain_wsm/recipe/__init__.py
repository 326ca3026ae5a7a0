"""Helpers every recipe shares: experiment setup and data pipelines.

- :mod:`.experiment`: :func:`load_hparams` (command line, DDP, strict YAML),
  :func:`prepare_librispeech_manifests`
- :mod:`.dataio`: :func:`manifest_dataset`, :func:`add_audio_pipeline`, :func:`add_token_pipeline`,
  :func:`dynamic_batch_sampler`, :class:`SpanMaskCollate`
- :mod:`.brain`: :class:`RecipeBrain`, the base of every recipe Brain
  (optimisers by parameter group, step schedule, ``train_cost.json``)
- :mod:`.ctc`: :class:`CTCBrain`, the Brain of every CTC recipe
- :mod:`.probe`: the MP3S probes (CTC and classification Brains, their runs)
- :mod:`.asr`: the LibriSpeech / Libri-light data side of the ASR recipes
- :mod:`.schedules`: :class:`TriStageSchedule` (warm-up, hold, decay by step)

Relative lengths become padding masks in :mod:`speechbrain_wsm.models.lengths`.
"""

from .brain import RecipeBrain
from .ctc import CTCBrain
from .dataio import (
    SpanMaskCollate,
    add_audio_pipeline,
    add_token_pipeline,
    dynamic_batch_sampler,
    manifest_dataset,
)
from .experiment import load_hparams, prepare_librispeech_manifests
from .schedules import TriStageSchedule

__all__ = [
    "CTCBrain",
    "RecipeBrain",
    "TriStageSchedule",
    "SpanMaskCollate",
    "add_audio_pipeline",
    "add_token_pipeline",
    "dynamic_batch_sampler",
    "load_hparams",
    "manifest_dataset",
    "prepare_librispeech_manifests",
]
