"""The one SSL upstream: ``ssl_source`` -> hidden states and frame lengths.

Every recipe that reads a pretrained SSL model (MP3S probes, selective
fine-tuning, and later LASER and feature fusion) goes through this package:

* :func:`~.sources.source_kind` tells what ``ssl_source`` is: an output folder
  of this project's wav2vec 2.0 pretraining recipe (``hyperparams.yaml`` +
  ``save/CKPT+*``) or a local Hugging Face wav2vec 2.0 / HuBERT / WavLM
  folder (``config.json`` + weights); anything else is a clear error.
* :func:`~.sources.load_upstream` loads it as an :class:`~.encoder.SSLUpstream`,
  frozen or trainable as the caller asks (with Hugging Face config overrides
  for fine-tuning); :func:`~.sources.load_ssl_model` gives the bare model
  (:func:`~.sources.load_trainable_ssl`: trainable, what fine-tuning starts
  from).
* :class:`~.encoder.SSLUpstream`: ``upstream(wavs [B, S], lengths [B]) ->
  (hidden_states, frame_lengths)``, ``upstream.encode(wavs, lengths) ->
  (output, frame_lengths)``; lengths are absolute (samples in, frames out).
* :mod:`.hf` is the one place that knows how Hugging Face models want their
  input (waveform standardisation, the sample attention mask), how many
  frames they make, and how to read their layers' attention masks back.

The frozen MP3S encoder with its feature cache
(:class:`speechbrain_wsm.models.ssl.SSLEncoder`) and the CTC fine-tuner
(:mod:`speechbrain_wsm.models.ssl_ctc`, :mod:`speechbrain_wsm.models.finetuning`)
are built on it.
"""

from speechbrain_wsm.models.upstream.encoder import SSLUpstream
from speechbrain_wsm.models.upstream.hf import (
    HF_MODEL_TYPES,
    hf_input_options,
    hf_model_inputs,
    hf_padding_mask,
)
from speechbrain_wsm.models.upstream.sources import (
    load_ssl_model,
    load_trainable_ssl,
    load_upstream,
    source_fingerprint,
    source_kind,
)

__all__ = [
    "HF_MODEL_TYPES",
    "SSLUpstream",
    "hf_input_options",
    "hf_model_inputs",
    "hf_padding_mask",
    "load_ssl_model",
    "load_trainable_ssl",
    "load_upstream",
    "source_fingerprint",
    "source_kind",
]
