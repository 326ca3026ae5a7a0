"""Helpers every recipe shares: experiment setup and data pipelines.

- :mod:`.experiment`: :func:`load_hparams` (command line, DDP, strict YAML),
  :func:`prepare_librispeech_manifests`
- :mod:`.dataio`: :func:`manifest_dataset`, :func:`add_audio_pipeline`, :func:`add_token_pipeline`,
  :func:`dynamic_batch_sampler`, :class:`SpanMaskCollate`
- :mod:`.brain`: :class:`RobustBrain`, the base of every recipe's Brain
  (accumulated gradients applied at every epoch end, whole batches for every
  DDP process)
- :mod:`.checkpoints`: :class:`RobustCheckpointer` (atomic saves, recovery
  from the newest complete checkpoint)
- :mod:`.ctc`: :class:`CTCBrain`, the Brain of every CTC recipe
- :mod:`.asr`: the LibriSpeech / Libri-light data side of the ASR recipes
- :mod:`.schedules`: :class:`TriStageSchedule` (warm-up, hold, decay by step)

Relative lengths become padding masks in :mod:`speechbrain_wsm.models.lengths`.
"""

from .brain import DistributedBatchSampler, RobustBrain
from .checkpoints import RobustCheckpointer
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
    "DistributedBatchSampler",
    "RobustBrain",
    "RobustCheckpointer",
    "TriStageSchedule",
    "SpanMaskCollate",
    "add_audio_pipeline",
    "add_token_pipeline",
    "dynamic_batch_sampler",
    "load_hparams",
    "manifest_dataset",
    "prepare_librispeech_manifests",
]
