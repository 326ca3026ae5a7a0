"""Helpers every recipe shares: experiment setup and data pipelines.

- :mod:`.experiment`: :func:`load_hparams` (command line, DDP, strict YAML)
- :mod:`.dataio`: :func:`manifest_dataset`, :func:`add_token_pipeline`,
  :func:`dynamic_batch_sampler`, :class:`SpanMaskCollate`
- :mod:`.brain`: :class:`RobustBrain`, under every recipe's Brain
  (accumulated gradients applied at every epoch end, whole batches for every
  DDP process, non-finite batches skipped, a run summary), and
  :class:`RecipeBrain` on it (optimisers by parameter group, step schedule,
  ``train_cost.json``)
- :mod:`.checkpoints`: :class:`RobustCheckpointer` (atomic saves, recovery
  from the newest complete checkpoint)
- :mod:`.ctc`: :class:`CTCBrain`, the Brain of every CTC recipe
- :mod:`.probe`: the MP3S probes (CTC and classification Brains, their runs)
- :mod:`.asr`: the LibriSpeech / Libri-light data side of the recipes,
  :func:`prepare_librispeech_manifests` (the one preparation wrapper)
- :mod:`.schedules`: :class:`TriStageSchedule` (warm-up, hold, decay by step)

Relative lengths become padding masks in :mod:`speechbrain_wsm.models.lengths`.
"""

from .asr import prepare_librispeech_manifests
from .brain import (
    DistributedBatchSampler,
    RecipeBrain,
    RobustBrain,
    set_schedule_length,
)
from .checkpoints import RobustCheckpointer
from .ctc import CTCBrain
from .dataio import (
    SpanMaskCollate,
    add_token_pipeline,
    dynamic_batch_sampler,
    manifest_dataset,
)
from .experiment import load_hparams
from .schedules import TriStageSchedule

__all__ = [
    "CTCBrain",
    "DistributedBatchSampler",
    "RecipeBrain",
    "RobustBrain",
    "RobustCheckpointer",
    "TriStageSchedule",
    "SpanMaskCollate",
    "add_token_pipeline",
    "dynamic_batch_sampler",
    "load_hparams",
    "manifest_dataset",
    "prepare_librispeech_manifests",
    "set_schedule_length",
]
