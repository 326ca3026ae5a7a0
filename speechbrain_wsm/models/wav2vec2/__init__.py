"""wav2vec 2.0 with an MHSA, SummaryMixing or WSM context network.

The pieces of the SummaryMixing wav2vec 2.0 recipe ("Linear-Complexity
Self-Supervised Learning for Speech Processing"), one module per concept
(:mod:`.frontends`, :mod:`.model`, :mod:`.objective`, :mod:`.checkpoints`);
every name stays importable from ``speechbrain_wsm.models.wav2vec2``, which
is what saved ``hyperparams.yaml`` files name:

* :class:`FbankLatentExtractor`: 80-bin log-mel filterbank (25 ms / 10 ms),
  standardised per utterance, then a small convolution stack down to 20 ms
  frames (the paper's front end);
  :class:`WaveformLatentExtractor`: the original wav2vec 2.0 waveform CNN
  (20 ms frames), as an option.
* :class:`ContextNetwork`: projection to ``d_model``, learned mask embedding,
  optional convolutional positional embedding, then a
  :class:`~speechbrain_wsm.nnet.encoders.MixerEncoder` (positions, when
  sinusoidal, are added by the encoder itself, the same way for every mixer).
* :class:`Wav2Vec2Encoder`: front end + context network, the part that
  downstream tasks load (:func:`load_pretrained_encoder`, in
  :mod:`.checkpoints`).
* :class:`Wav2Vec2Pretrainer`: the encoder plus SpeechBrain's Gumbel target
  quantiser (with :class:`GumbelQuantiser`, a lighter codeword lookup) and
  the projection of masked outputs;
  :class:`Wav2Vec2Loss`: contrastive loss against sampled negatives plus the
  codebook diversity loss.

Lengths: the front ends and :class:`Wav2Vec2Encoder` (its one entry point,
``encoder(wav, lengths) -> (output, hidden_states, frame_lengths)``, and its
front-end step :meth:`Wav2Vec2Encoder.latents`) take absolute lengths
(samples) and give frame lengths; the module a Brain calls
(:class:`Wav2Vec2Pretrainer`) takes the relative ``wav_lens`` of SpeechBrain
batches and converts them once, through :mod:`speechbrain_wsm.models.lengths`
(which also holds the per-utterance standardisation both front ends use). Downstream recipes load the encoder
through :mod:`speechbrain_wsm.models.upstream`. Both front ends use ``valid``
windows (no centring), so a valid frame never sees padding and a padded batch
encodes every utterance as it would alone.
"""

from speechbrain_wsm.models.wav2vec2.checkpoints import (
    find_checkpoint,
    load_pretrained_encoder,
    load_pretrained_model,
)
from speechbrain_wsm.models.wav2vec2.frontends import (
    FbankLatentExtractor,
    WaveformLatentExtractor,
)
from speechbrain_wsm.models.wav2vec2.model import (
    ContextNetwork,
    ConvPositionalEmbedding,
    Wav2Vec2Encoder,
    Wav2Vec2Pretrainer,
)
from speechbrain_wsm.models.wav2vec2.objective import (
    GumbelQuantiser,
    Wav2Vec2Loss,
    sample_negative_indices,
)

__all__ = [
    "ContextNetwork",
    "ConvPositionalEmbedding",
    "FbankLatentExtractor",
    "GumbelQuantiser",
    "Wav2Vec2Encoder",
    "Wav2Vec2Loss",
    "Wav2Vec2Pretrainer",
    "WaveformLatentExtractor",
    "find_checkpoint",
    "load_pretrained_encoder",
    "load_pretrained_model",
    "sample_negative_indices",
]
