"""SSL-model surgery: swap self-attention for SummaryMixing blocks, freeze the rest.

Selective fine-tuning (Menon et al., "Windowed SummaryMixing: an efficient
fine-tuning of self-supervised learning models for low-resource speech
recognition", ICASSP 2026) replaces the self-attention of the top layers of a
pretrained SSL model by new WSM (or SM) blocks and trains only those (plus the
task head). This module does the surgery on

* Hugging Face ``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel`` and their
  ``ForCTC`` wrappers (post-LayerNorm "base" and pre-LayerNorm "large"
  layers alike), or any module holding one;
* this project's wav2vec 2.0 encoder, and any module holding a
  :class:`~speechbrain_wsm.nnet.encoders.MixerEncoder` (layers with a
  ``mixer``).

What stays as it was: each layer keeps its own residual, LayerNorm and
feed-forward code; only the self-attention module is swapped. For Hugging
Face layers the new block sits inside :class:`MixerAttention`, which takes
exactly what the layer passes to its attention (the 4-D additive or boolean
attention mask, or the 2-D one; WavLM's ``position_bias``), turns the mask
into a ``[batch, frame]`` padding mask
(:func:`~speechbrain_wsm.models.upstream.hf.hf_padding_mask`) and returns what the layer expects.
So the model's forward still takes its own ``attention_mask``, and every
layer below the first replaced one computes exactly what it computed before.

Memory: :func:`skip_frozen_activations` (installed by :func:`replace_attention`
and :func:`apply_finetuning_mode`) runs the part of the forward pass that
comes before the first module with a trainable parameter without autograd, so
the front end and the frozen lower layers store no activations and peak
training memory falls with the number of frozen layers.

Pieces, one module per concept: :mod:`.layers` (finding the layers),
:mod:`.hf_adapter` (the mixer inside a Hugging Face layer), :mod:`.freezing`
(which parameters train), :mod:`.replacement` (the surgery and the fine-tuning
modes), :mod:`.no_grad` (no activations for the frozen prefix); their public
names are all importable from here. Finding the layer stack itself is
:func:`speechbrain_wsm.nnet.layer_stack.find_layer_stack`.
"""

from speechbrain_wsm.models.surgery.freezing import (
    count_parameters,
    set_trainable,
    train_only_attention,
    trainable_parameter_names,
)
from speechbrain_wsm.models.surgery.hf_adapter import (
    MixerAttention,
    WavLMRelativePositionBias,
)
from speechbrain_wsm.models.surgery.layers import resolve_indices, resolve_layers
from speechbrain_wsm.models.surgery.no_grad import skip_frozen_activations
from speechbrain_wsm.models.surgery.replacement import (
    FINETUNING_MODES,
    apply_finetuning_mode,
    replace_attention,
    surgery_record,
)

__all__ = [
    "FINETUNING_MODES",
    "MixerAttention",
    "WavLMRelativePositionBias",
    "apply_finetuning_mode",
    "count_parameters",
    "replace_attention",
    "resolve_indices",
    "resolve_layers",
    "set_trainable",
    "skip_frozen_activations",
    "surgery_record",
    "train_only_attention",
    "trainable_parameter_names",
]
