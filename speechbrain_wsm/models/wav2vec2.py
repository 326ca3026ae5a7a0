"""wav2vec 2.0 with an MHSA, SummaryMixing or WSM context network.

The pieces of the SummaryMixing wav2vec 2.0 recipe ("Linear-Complexity
Self-Supervised Learning for Speech Processing"), one module per concept:

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
  downstream tasks load (:func:`load_pretrained_encoder`).
* :class:`Wav2Vec2Pretrainer`: the encoder plus SpeechBrain's Gumbel target
  quantiser (with :class:`GumbelQuantiser`, a lighter codeword lookup) and
  the projection of masked outputs;
  :class:`Wav2Vec2Loss`: contrastive loss against sampled negatives plus the
  codebook diversity loss.

Lengths: the front ends and :meth:`Wav2Vec2Encoder.encode` take absolute
lengths (samples) and give frame lengths; the modules a Brain calls
(:class:`Wav2Vec2Pretrainer`, :meth:`Wav2Vec2Encoder.forward`) take the
relative ``wav_lens`` of SpeechBrain batches and convert them once, through
:mod:`speechbrain_wsm.models.lengths` (which also holds the per-utterance
standardisation both front ends use). Downstream recipes load the encoder
through :mod:`speechbrain_wsm.models.upstream`. Both front ends use ``valid``
windows (no centring), so a valid frame never sees padding and a padded batch
encodes every utterance as it would alone.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.wav2vec import W2VLatentExtractor
from speechbrain.nnet.quantisers import GumbelVectorQuantizer
from speechbrain.processing.features import STFT, Filterbank, spectral_magnitude
from speechbrain.utils.checkpoints import Checkpointer
from torch import nn

from speechbrain_wsm.models.lengths import (
    lengths_to_padding_mask,
    relative_to_absolute,
    standardize,
)

__all__ = [
    "ContextNetwork",
    "ConvPositionalEmbedding",
    "FbankLatentExtractor",
    "FrameCounter",
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

logger = logging.getLogger(__name__)


class FrameCounter:
    """Number of outputs a stack of ``valid`` strided windows makes of ``n`` inputs.

    A small picklable callable, so that data-loader workers can compute frame
    counts (for the span masks) without holding the model.

    Arguments
    ---------
    kernel_sizes : sequence of int
        Window (kernel) size of each stage.
    strides : sequence of int
        Hop (stride) of each stage.

    Example
    -------
    >>> count = FrameCounter([400, 3, 3], [160, 2, 1])  # the fbank front end
    >>> count(torch.tensor([16000, 32000]))  # 1 s and 2 s at 16 kHz
    tensor([46, 96])
    """

    def __init__(self, kernel_sizes: Sequence[int], strides: Sequence[int]):
        if len(kernel_sizes) != len(strides):
            raise ValueError(
                f"kernel_sizes {list(kernel_sizes)} and strides {list(strides)} "
                "must have the same length"
            )
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        self.strides = [int(s) for s in strides]

    def __call__(self, n) -> torch.Tensor:
        n = torch.as_tensor(n).long()
        for k, s in zip(self.kernel_sizes, self.strides, strict=True):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def __repr__(self) -> str:
        return f"FrameCounter(kernel_sizes={self.kernel_sizes}, strides={self.strides})"


def _check_wav(wav: torch.Tensor, frame_counter: FrameCounter | None = None) -> None:
    if wav.dim() != 2:
        raise ValueError(
            f"expected a waveform batch [batch, sample], got shape {tuple(wav.shape)}"
        )
    if frame_counter is not None and int(frame_counter(wav.shape[1])) < 1:
        raise ValueError(
            f"{wav.shape[1]} samples are too few for the front end "
            f"({frame_counter}): it makes no frame"
        )


class FbankLatentExtractor(nn.Module):
    """Log-mel filterbank + strided convolutions: the paper's 20 ms front end.

    80 mel bins from 25 ms windows every 10 ms (no centring, so a frame never
    reaches past the end of its utterance), standardised per utterance over its
    valid frames, then ``Conv1d -> LayerNorm -> GELU`` blocks (default two,
    kernel 3, strides 2 and 1: 20 ms frames) and a final LayerNorm.

    Arguments
    ---------
    n_mels : int
        Mel bins.
    channels : sequence of int
        Output channels of each convolution; the last is ``out_dim``.
    kernel_sizes, strides : sequence of int
        Kernel and stride of each convolution.
    sample_rate : int
        Audio sample rate (Hz).
    n_fft : int
        FFT size (samples).
    win_length, hop_length : float
        Analysis window and hop (ms).
    dropout : float
        Dropout after each convolution block.

    Example
    -------
    >>> fe = FbankLatentExtractor(n_mels=20, channels=[16, 16])
    >>> wav = torch.randn(2, 16000)
    >>> fe(wav, torch.tensor([16000, 8000])).shape
    torch.Size([2, 46, 16])
    >>> fe.output_lengths(torch.tensor([16000, 8000]))
    tensor([46, 21])
    """

    def __init__(
        self,
        n_mels: int = 80,
        channels: Sequence[int] = (512, 512),
        kernel_sizes: Sequence[int] = (3, 3),
        strides: Sequence[int] = (2, 1),
        sample_rate: int = 16000,
        n_fft: int = 400,
        win_length: float = 25,
        hop_length: float = 10,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not len(channels) == len(kernel_sizes) == len(strides):
            raise ValueError(
                f"channels {list(channels)}, kernel_sizes {list(kernel_sizes)} and "
                f"strides {list(strides)} must have the same length"
            )
        self.stft = STFT(
            sample_rate=sample_rate,
            win_length=win_length,
            hop_length=hop_length,
            n_fft=n_fft,
            center=False,
        )
        self.fbank = Filterbank(
            n_mels=n_mels,
            log_mel=False,
            n_fft=n_fft,
            sample_rate=sample_rate,
            f_max=sample_rate // 2,
            freeze=True,
        )
        blocks, in_dim = [], n_mels
        for out_dim, k, s in zip(channels, kernel_sizes, strides, strict=True):
            blocks.append(_ConvBlock(in_dim, out_dim, k, s, dropout))
            in_dim = out_dim
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(in_dim)
        self.out_dim = in_dim
        hop = self.stft.hop_length
        self.output_lengths = FrameCounter([n_fft, *kernel_sizes], [hop, *strides])
        self._fbank_frames = FrameCounter([n_fft], [hop])

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """``wav`` ``[batch, sample]``, ``lengths`` ``[batch]`` samples (None:
        no padding) -> latents ``[batch, frame, out_dim]``."""
        _check_wav(wav, self.output_lengths)
        with torch.autocast(device_type=wav.device.type, enabled=False):
            feats = self.fbank(spectral_magnitude(self.stft(wav.float())))
            feats = torch.log(feats.clamp(min=1e-10))
            frames = None if lengths is None else self._fbank_frames(lengths)
            feats = standardize(feats, frames)
        x = feats
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class _ConvBlock(nn.Module):
    """``Conv1d (valid) -> LayerNorm (channels) -> GELU -> Dropout`` on [B, T, C]."""

    def __init__(self, in_dim, out_dim, kernel_size, stride, dropout):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, stride, bias=False)
        self.norm = nn.LayerNorm(out_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.act(self.norm(x)))


class WaveformLatentExtractor(W2VLatentExtractor):
    """The wav2vec 2.0 waveform CNN (SpeechBrain's), on standardised audio.

    Each utterance is standardised over its valid samples (padding zeroed),
    then goes through SpeechBrain's :class:`W2VLatentExtractor`; the default
    strides (5, 2, 2, 2, 2, 2, 2) give 20 ms frames.

    Arguments
    ---------
    out_channels, kernel_sizes, strides : sequence of int
        One entry per convolution.
    dropout : float
        Dropout of the convolution blocks.

    Example
    -------
    >>> fe = WaveformLatentExtractor(out_channels=[8] * 7)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 49, 8])
    >>> fe.output_lengths(16000)
    tensor(49)
    """

    def __init__(
        self,
        out_channels: Sequence[int] = (512,) * 7,
        kernel_sizes: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        dropout: float = 0.0,
    ):
        super().__init__(
            out_channels=list(out_channels),
            kernel_sizes=list(kernel_sizes),
            strides=list(strides),
            dropout=dropout,
        )
        self.output_lengths = FrameCounter(kernel_sizes, strides)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """``wav`` ``[batch, sample]`` -> latents ``[batch, frame, out_dim]``."""
        _check_wav(wav, self.output_lengths)
        return super().forward(standardize(wav, lengths), normalize_signal=False)


class GumbelQuantiser(GumbelVectorQuantizer):
    """SpeechBrain's Gumbel-softmax quantiser, selecting codewords by a product.

    The same parameters (state dicts load either way), outputs, statistics
    and random draws as :class:`GumbelVectorQuantizer`; only the codeword
    lookup differs: a ``[frames, groups, codes] x [groups, codes, dim]``
    product, where SpeechBrain multiplies the one-hot choice into a
    ``[frames, groups * codes, dim]`` tensor (1.3 GB in float32 for 4k masked
    frames and 2 x 320 codes of 128 dimensions, and as much again in
    backward). Pass it as ``W2VTargetQuantiser(..., quantiser=GumbelQuantiser)``.

    Example
    -------
    >>> q = GumbelQuantiser(16, 10, (2.0, 0.25, 0.999995), 2, 8)
    >>> out = q(torch.randn(2, 5, 16))
    >>> out["x"].shape, out["num_vars"]
    (torch.Size([2, 5, 8]), 20)
    """

    def forward(self, x):
        """``x`` ``[batch, frame, input_dim]`` -> dict with quantised ``x``
        ``[batch, frame, vq_dim]``, ``code_perplexity``, ``prob_perplex``,
        ``num_vars``, ``temp``."""
        B, T, _ = x.shape
        logits = self.weight_proj(x.reshape(B * T, -1))
        logits = logits.view(B * T, self.groups, self.num_vars)
        hard = nn.functional.one_hot(logits.argmax(-1), self.num_vars)
        hard_probs = hard.float().mean(0)
        soft_probs = torch.softmax(logits.float(), dim=-1).mean(0)
        if self.training:
            choice = nn.functional.gumbel_softmax(
                logits.float(), tau=self.curr_temp, hard=True
            ).type_as(logits)
        else:
            choice = hard.to(logits.dtype)
        codebook = self.vars.view(self.groups, self.num_vars, -1)
        codes = torch.einsum("ngv,gvd->ngd", choice, codebook.to(choice.dtype))
        return {
            "x": codes.reshape(B, T, -1),
            "code_perplexity": _perplexity(hard_probs),
            "prob_perplex": _perplexity(soft_probs),
            "num_vars": self.num_vars * self.groups,
            "temp": self.curr_temp,
        }


def _perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Sum over groups of ``exp(entropy)`` of ``[groups, codes]`` probabilities."""
    return torch.exp(-torch.sum(probs * torch.log(probs + 1e-7), dim=-1)).sum()


class ConvPositionalEmbedding(nn.Module):
    """wav2vec 2.0's convolutional relative positional embedding.

    A grouped, weight-normalised convolution over time followed by GELU; its
    output is added to the input. Padded frames are zeroed before the
    convolution, so they never reach a valid frame.

    Arguments
    ---------
    d_model : int
        Feature size.
    kernel_size : int
        Convolution width in frames (128 in wav2vec 2.0).
    groups : int
        Convolution groups (16 in wav2vec 2.0).

    Example
    -------
    >>> pos = ConvPositionalEmbedding(16, kernel_size=8, groups=4)
    >>> pos(torch.randn(2, 10, 16)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(self, d_model: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        if d_model % groups:
            raise ValueError(f"d_model {d_model} must be divisible by groups {groups}")
        conv = nn.Conv1d(
            d_model, d_model, kernel_size, padding=kernel_size // 2, groups=groups
        )
        nn.init.normal_(
            conv.weight, mean=0.0, std=(4.0 / (kernel_size * d_model)) ** 0.5
        )
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """``x`` ``[batch, frame, d_model]`` -> positional term, same shape."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        y = self.conv(x.transpose(1, 2))[..., : x.shape[1]]
        return self.act(y).transpose(1, 2)


class ContextNetwork(nn.Module):
    """Projection, mask embedding, positions and the context encoder.

    ``latents -> Linear(in_dim, d_model) -> Dropout``; frames selected by
    ``mask`` are replaced by a learned embedding; the optional convolutional
    positional embedding is added; then the encoder runs. The same steps run
    for every mixer, so MHSA, SM and WSM models differ only in the mixer.

    Arguments
    ---------
    encoder : MixerEncoder
        Any module with ``d_model`` and
        ``forward(x, src_key_padding_mask) -> (output, hidden_states)``.
    in_dim : int
        Latent feature size (the front end's ``out_dim``).
    dropout_input : float
        Dropout on the projected latents.
    pos_conv_kernel : int
        Width of the convolutional positional embedding; 0 disables it (the
        paper's models use the encoder's sinusoidal positions instead).
    pos_conv_groups : int
        Groups of that convolution.

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> enc = MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="sm")
    >>> net = ContextNetwork(enc, in_dim=8)
    >>> out, hidden = net(torch.randn(2, 10, 8))
    >>> out.shape, len(hidden)
    (torch.Size([2, 10, 16]), 3)
    """

    def __init__(
        self,
        encoder: nn.Module,
        in_dim: int,
        dropout_input: float = 0.1,
        pos_conv_kernel: int = 0,
        pos_conv_groups: int = 16,
    ):
        super().__init__()
        self.d_model = encoder.d_model
        self.input_proj = nn.Linear(in_dim, self.d_model)
        self.dropout = nn.Dropout(dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(self.d_model).uniform_())
        self.pos_conv = (
            ConvPositionalEmbedding(self.d_model, pos_conv_kernel, pos_conv_groups)
            if pos_conv_kernel > 0
            else None
        )
        self.encoder = encoder

    def forward(self, latents, padding_mask=None, mask=None):
        """Encode ``latents`` ``[batch, frame, in_dim]``.

        Arguments
        ---------
        latents : torch.Tensor
            ``[batch, frame, in_dim]`` front-end output.
        padding_mask : torch.Tensor, optional
            ``[batch, frame]`` bool, True = padding.
        mask : torch.Tensor, optional
            ``[batch, frame]`` bool, True = replace by the mask embedding.

        Returns
        -------
        output, hidden_states
            As :meth:`MixerEncoder.forward`: ``[batch, frame, d_model]`` and
            the list of ``num_layers + 1`` hidden states.
        """
        x = self.dropout(self.input_proj(latents))
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(
                    f"mask must be [batch, frame] = {tuple(x.shape[:2])}, "
                    f"got {tuple(mask.shape)}"
                )
            x = torch.where(mask.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x, padding_mask)
        return self.encoder(x, src_key_padding_mask=padding_mask)


class Wav2Vec2Encoder(nn.Module):
    """Waveform to contextual features: front end + context network.

    This is what downstream recipes (MP3S probing, selective fine-tuning) get
    from :func:`load_pretrained_encoder`.

    Arguments
    ---------
    latent_extractor : nn.Module
        :class:`FbankLatentExtractor` or :class:`WaveformLatentExtractor` (any
        module with ``out_dim``, ``output_lengths(samples)`` and
        ``forward(wav, lengths)``).
    context : ContextNetwork
        The context network.

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> fe = FbankLatentExtractor(n_mels=20, channels=[16, 16])
    >>> net = ContextNetwork(MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="wsm"), 16)
    >>> model = Wav2Vec2Encoder(fe, net).eval()
    >>> out, hidden = model(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> out.shape, len(hidden), model.num_layers
    (torch.Size([2, 46, 16]), 3, 2)
    """

    def __init__(self, latent_extractor: nn.Module, context: ContextNetwork):
        super().__init__()
        self.latent_extractor = latent_extractor
        self.context = context

    @property
    def d_model(self) -> int:
        """Feature size of the output and of every hidden state."""
        return self.context.d_model

    @property
    def num_layers(self) -> int:
        """Context-network layers (``hidden_states`` has one more entry)."""
        return len(self.context.encoder.layers)

    def front_end(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """Front end only, absolute lengths: ``(latents, frame_lengths)``.

        ``wav`` ``[batch, sample]``, ``lengths`` ``[batch]`` samples (None: no
        padding) -> latents ``[batch, frame, out_dim]`` and ``[batch]`` valid
        frames (None when ``lengths`` is None).
        """
        _check_wav(wav)
        if lengths is None:
            return self.latent_extractor(wav), None
        latents = self.latent_extractor(wav, lengths)
        return latents, self.latent_extractor.output_lengths(lengths)

    def encode(self, wav, lengths=None, mask=None):
        """Encode a waveform batch with absolute lengths.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, sample]`` 16 kHz audio (any scale: each utterance is
            standardised by the front end).
        lengths : torch.Tensor, optional
            ``[batch]`` valid samples of each utterance; None means no padding.
        mask : torch.Tensor, optional
            ``[batch, frame]`` bool frames to mask (pretraining only).

        Returns
        -------
        output : torch.Tensor
            ``[batch, frame, d_model]``, 20 ms frames, after the final
            LayerNorm.
        hidden_states : list of torch.Tensor
            ``num_layers + 1`` tensors ``[batch, frame, d_model]``: the
            encoder input (projected latents, with positions) and every
            layer's output.
        frame_lengths : torch.Tensor or None
            ``[batch]`` valid frames (None when ``lengths`` is None).
        """
        latents, frames = self.front_end(wav, lengths)
        padding_mask = None
        if frames is not None:
            padding_mask = lengths_to_padding_mask(frames, latents.shape[1])
        output, hidden_states = self.context(latents, padding_mask, mask)
        return output, hidden_states, frames

    def extract(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None):
        """Front end only, relative lengths: ``(latents, padding_mask)``.

        ``padding_mask`` is ``[batch, frame]`` bool (True = padding), or None
        when ``wav_lens`` is None.
        """
        _check_wav(wav)
        samples = None
        if wav_lens is not None:
            samples = relative_to_absolute(wav_lens, wav.shape[1]).to(wav.device)
        latents, frames = self.front_end(wav, samples)
        if frames is None:
            return latents, None
        return latents, lengths_to_padding_mask(frames, latents.shape[1])

    def forward(self, wav, wav_lens=None, mask=None):
        """Encode a waveform batch with relative lengths (a SpeechBrain batch's).

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, sample]`` 16 kHz audio.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths in ``[0, 1]`` (SpeechBrain's
            ``wav_lens``); None means no padding. The same relative lengths
            hold for the output frames.
        mask : torch.Tensor, optional
            ``[batch, frame]`` bool frames to mask (pretraining only).

        Returns
        -------
        output, hidden_states
            As :meth:`encode`.
        """
        _check_wav(wav)
        samples = None
        if wav_lens is not None:
            samples = relative_to_absolute(wav_lens, wav.shape[1]).to(wav.device)
        output, hidden_states, _ = self.encode(wav, samples, mask)
        return output, hidden_states


class Wav2Vec2Pretrainer(nn.Module):
    """The model wav2vec 2.0 pretraining trains: encoder, quantiser, projection.

    ``forward(wav, wav_lens, mask)`` runs the front end; the quantiser turns
    the latents of the masked frames into targets; the context network sees
    the latents with masked frames replaced by the mask embedding, and its
    outputs at those frames are projected to ``final_dim`` as predictions.

    Arguments
    ---------
    latent_extractor : nn.Module
        The front end (see :class:`Wav2Vec2Encoder`).
    encoder : MixerEncoder
        The context encoder.
    quantiser : nn.Module
        SpeechBrain's ``W2VTargetQuantiser`` (Gumbel, 2 groups), reading
        ``latent_extractor.out_dim`` features and writing ``final_dim``.
    final_dim : int
        Size of predictions and targets.
    dropout_input, pos_conv_kernel, pos_conv_groups
        See :class:`ContextNetwork`.

    Example
    -------
    >>> from speechbrain.lobes.models.wav2vec import W2VTargetQuantiser
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> model = Wav2Vec2Pretrainer(
    ...     FbankLatentExtractor(n_mels=20, channels=[16, 16]),
    ...     MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="sm"),
    ...     W2VTargetQuantiser(in_dim=16, out_dim=8, num_vars=10),
    ...     final_dim=8,
    ... )
    >>> mask = torch.zeros(2, 46, dtype=torch.bool)
    >>> mask[:, 5:15] = True
    >>> out = model(torch.randn(2, 16000), torch.tensor([1.0, 0.8]), mask)
    >>> out["predictions"].shape, out["targets"].shape
    (torch.Size([2, 10, 8]), torch.Size([2, 10, 8]))
    """

    def __init__(
        self,
        latent_extractor: nn.Module,
        encoder: nn.Module,
        quantiser: nn.Module,
        final_dim: int = 256,
        dropout_input: float = 0.1,
        pos_conv_kernel: int = 0,
        pos_conv_groups: int = 16,
    ):
        super().__init__()
        in_dim = latent_extractor.out_dim
        q_in = getattr(getattr(quantiser, "quantiser", None), "input_dim", in_dim)
        if q_in != in_dim:
            raise ValueError(
                f"the quantiser reads {q_in} features but the front end writes {in_dim}"
            )
        q_out = getattr(getattr(quantiser, "proj", None), "out_features", final_dim)
        if q_out != final_dim:
            raise ValueError(
                f"the quantiser writes {q_out} features, final_dim is {final_dim}"
            )
        context = ContextNetwork(
            encoder, in_dim, dropout_input, pos_conv_kernel, pos_conv_groups
        )
        self.encoder = Wav2Vec2Encoder(latent_extractor, context)
        self.quantiser = quantiser
        self.feat_proj = nn.Linear(context.d_model, final_dim)
        self.final_dim = final_dim

    @property
    def output_lengths(self) -> FrameCounter:
        """Samples -> frames of the front end (for the span masks)."""
        return self.encoder.latent_extractor.output_lengths

    def update_temperature(self, optimizer_step: int) -> None:
        """Anneal the Gumbel temperature to its value at ``optimizer_step``."""
        self.quantiser.quantiser.update_temp(optimizer_step)

    def forward(self, wav, wav_lens, mask):
        """One pretraining forward pass.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, sample]`` audio.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.
        mask : torch.Tensor
            ``[batch, frame]`` bool, the same number of masked (valid) frames
            in every utterance, as SpeechBrain's ``compute_mask`` makes them.

        Returns
        -------
        dict
            ``predictions`` and ``targets`` ``[batch, masked, final_dim]``,
            ``num_masked``, and the quantiser's ``diversity_loss``,
            ``prob_perplex``, ``code_perplex``, ``temp``.
        """
        latents, padding_mask = self.encoder.extract(wav, wav_lens)
        if mask.shape != latents.shape[:2]:
            raise ValueError(
                f"mask is {tuple(mask.shape)} but the front end made "
                f"{tuple(latents.shape[:2])} [batch, frame]: compute the mask with "
                "this model's output_lengths"
            )
        counts = mask.sum(1)
        if bool((counts != counts[0]).any()) or int(counts[0]) < 2:
            raise ValueError(
                "every utterance needs the same number (>= 2) of masked frames, "
                f"got {counts.tolist()}"
            )
        if padding_mask is not None and bool((mask & padding_mask).any()):
            raise ValueError("the mask selects padded frames")
        output, _ = self.encoder.context(latents, padding_mask, mask)
        B, C = wav.shape[0], latents.shape[-1]
        predictions = self.feat_proj(output[mask]).view(B, -1, self.final_dim)
        targets, meta = self.quantiser(latents[mask].view(B, -1, C))
        return {
            "predictions": predictions,
            "targets": targets,
            "num_masked": counts.sum(),
            **meta,
        }


def sample_negative_indices(
    batch: int, frames: int, num_negatives: int, device=None
) -> torch.Tensor:
    """Indices of negatives: for each frame, ``num_negatives`` other frames.

    Uniform over the ``frames - 1`` other frames of the same utterance (with
    replacement), as SpeechBrain's and fairseq's samplers draw them.

    Returns
    -------
    torch.Tensor
        ``[batch, frames, num_negatives]`` long, never equal to the frame's
        own index.

    Example
    -------
    >>> idx = sample_negative_indices(2, 5, 3)
    >>> idx.shape, bool((idx == torch.arange(5)[None, :, None]).any())
    (torch.Size([2, 5, 3]), False)
    """
    if frames < 2:
        raise ValueError(f"negatives need at least 2 frames, got {frames}")
    own = torch.arange(frames, device=device).view(1, frames, 1)
    idx = torch.randint(0, frames - 1, (batch, frames, num_negatives), device=device)
    return idx + (idx >= own).long()


class Wav2Vec2Loss(nn.Module):
    """Contrastive (InfoNCE) loss against sampled negatives, plus diversity.

    For each masked frame, the prediction must pick its quantised target out
    of ``num_negatives`` targets of other masked frames of the same utterance;
    logits are cosine similarities divided by ``logit_temp``, and a negative
    identical to the target is left out (-inf), as in SpeechBrain's
    ``ContrastiveLoss`` and fairseq. The loss is the mean over masked frames
    of that cross-entropy plus ``diversity_weight`` times the codebook
    diversity loss: the recipe's objective, normalised per masked frame so
    that it does not depend on the batch size.

    The cosines come from one ``[frames, frames]`` similarity matrix per
    utterance, from which the negatives are gathered, instead of materialising
    ``num_negatives`` copies of the targets ``[negatives, batch, frames,
    dim]``: the same loss with a small fraction of the memory (at 16 s per
    utterance, 100 negatives, 256 dimensions, the copies alone would take
    about 50 MB per utterance in float32, several times over in backward).
    Computed in float32 under autocast.

    Arguments
    ---------
    num_negatives : int
        Negatives per masked frame.
    logit_temp : float
        Temperature of the cosine logits.
    diversity_weight : float
        Weight of the diversity loss.

    Example
    -------
    >>> loss = Wav2Vec2Loss(num_negatives=5)
    >>> out = {"predictions": torch.randn(2, 10, 8), "targets": torch.randn(2, 10, 8),
    ...        "diversity_loss": torch.tensor(0.5)}
    >>> stats = loss(out)
    >>> sorted(stats)
    ['accuracy', 'contrastive_loss', 'diversity_loss', 'loss']
    """

    def __init__(
        self,
        num_negatives: int = 100,
        logit_temp: float = 0.1,
        diversity_weight: float = 0.1,
    ):
        super().__init__()
        self.num_negatives = num_negatives
        self.logit_temp = logit_temp
        self.diversity_weight = diversity_weight

    def contrastive(self, predictions, targets, negative_idx):
        """Mean InfoNCE loss and accuracy for given negative indices.

        ``predictions``, ``targets``: ``[batch, frames, dim]``;
        ``negative_idx``: ``[batch, frames, negatives]`` (see
        :func:`sample_negative_indices`).
        """
        B, T, _ = targets.shape
        with torch.autocast(device_type=targets.device.type, enabled=False):
            x = nn.functional.normalize(predictions.float(), dim=-1, eps=1e-8)
            y = nn.functional.normalize(targets.float(), dim=-1, eps=1e-8)
            cos = torch.bmm(x, y.transpose(1, 2))  # [B, T, T]: cos(x_t, y_j)
            positive = cos.diagonal(dim1=1, dim2=2).unsqueeze(-1)
            negative = cos.gather(2, negative_idx)
            # A negative equal to the target (the same code) is no negative.
            codes = torch.unique(
                targets.detach().reshape(B * T, -1), dim=0, return_inverse=True
            )[1].view(B, T)
            same = codes.gather(1, negative_idx.view(B, -1)).view_as(negative_idx)
            negative = negative.masked_fill(same == codes.unsqueeze(-1), float("-inf"))
            logits = torch.cat([positive, negative], dim=-1) / self.logit_temp
            logits = logits.view(B * T, -1)
            zeros = torch.zeros(B * T, dtype=torch.long, device=logits.device)
            loss = nn.functional.cross_entropy(logits, zeros)
            accuracy = (logits.argmax(-1) == 0).float().mean()
        return loss, accuracy

    def forward(self, outputs: dict) -> dict:
        """``outputs`` of :class:`Wav2Vec2Pretrainer` -> loss and statistics."""
        predictions, targets = outputs["predictions"], outputs["targets"]
        B, T, _ = targets.shape
        idx = sample_negative_indices(B, T, self.num_negatives, targets.device)
        contrastive, accuracy = self.contrastive(predictions, targets, idx)
        diversity = outputs["diversity_loss"]
        return {
            "loss": contrastive + self.diversity_weight * diversity,
            "contrastive_loss": contrastive,
            "diversity_loss": diversity,
            "accuracy": accuracy,
        }


# --------------------------------------------------------------------------
# Loading a pretrained model from a recipe's output folder
# --------------------------------------------------------------------------


def _model_yaml(hparams_file: Path, key: str) -> str:
    """The definition of top-level ``key`` of a resolved hyperparams file."""
    yaml = ruamel.yaml.YAML()
    with open(hparams_file, encoding="utf-8") as f:
        tree = yaml.load(f)
    if not isinstance(tree, dict) or key not in tree:
        keys = ", ".join(map(str, tree)) if isinstance(tree, dict) else ""
        raise KeyError(f"{hparams_file} has no top-level '{key}' (keys: {keys})")
    out = io.StringIO()
    yaml.dump({key: tree[key]}, out)
    return out.getvalue()


def find_checkpoint(folder, checkpoint=None, key: str = "wav2vec2") -> Path:
    """The weights file of ``key`` in a recipe's output folder.

    Arguments
    ---------
    folder : str or Path
        The recipe's output folder (holding ``save/CKPT+*``).
    checkpoint : str or Path, optional
        A ``CKPT+...`` folder or a ``.ckpt`` file; default the most recent
        checkpoint in ``<folder>/save``.
    key : str
        Name of the module in the checkpointer.

    Returns
    -------
    Path
        ``<checkpoint>/<key>.ckpt``.
    """
    if checkpoint is not None:
        path = Path(checkpoint)
        path = path / f"{key}.ckpt" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint file {path}")
        return path
    save = Path(folder) / "save"
    found = None
    if save.is_dir():
        found = Checkpointer(save).find_checkpoint(
            ckpt_predicate=lambda c: key in c.paramfiles
        )
    if found is None:
        raise FileNotFoundError(
            f"no checkpoint with {key}.ckpt under {save}: has the recipe run "
            "(and saved at an epoch end or at --ckpt_interval_minutes)?"
        )
    return Path(found.paramfiles[key])


def load_pretrained_model(
    folder,
    checkpoint=None,
    device="cpu",
    key: str = "wav2vec2",
    hparams_file: str = "hyperparams.yaml",
) -> Wav2Vec2Pretrainer:
    """Rebuild a pretraining recipe's whole model and load its weights.

    The model is rebuilt from the definition of ``key`` in the resolved
    ``<folder>/hyperparams.yaml`` that the recipe writes (only that entry is
    instantiated: no data, optimiser or seed side effects), then the weights of
    the most recent checkpoint (or ``checkpoint``) are loaded. See
    :func:`load_pretrained_encoder` for the encoder alone.

    Returns
    -------
    Wav2Vec2Pretrainer
        In eval mode, on ``device``.
    """
    folder = Path(folder)
    hparams_path = folder / hparams_file
    if not hparams_path.is_file():
        raise FileNotFoundError(
            f"{hparams_path} not found: pass the recipe's output folder "
            "(results/wav2vec2_<mixer>/<seed>)"
        )
    weights = find_checkpoint(folder, checkpoint, key)
    # Building the model draws random initial weights: leave the caller's
    # random streams as they were.
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        model = load_hyperpyyaml(_model_yaml(hparams_path, key))[key]
    random.setstate(states[0])
    np.random.set_state(states[1])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    logger.info("loaded %s from %s", key, weights)
    return model.to(device).eval()


def load_pretrained_encoder(
    folder,
    checkpoint=None,
    device="cpu",
    freeze: bool = False,
    key: str = "wav2vec2",
) -> Wav2Vec2Encoder:
    """Load the pretrained encoder of a wav2vec 2.0 recipe run.

    The interface downstream recipes (MP3S probing, selective fine-tuning)
    use. ``folder`` is the pretraining output folder, e.g.
    ``results/wav2vec2_wsm_w32/1986``: the model is rebuilt from the resolved
    ``hyperparams.yaml`` there, so any mixer, size or front end loads without
    extra configuration, and the weights come from the most recent
    checkpoint in ``<folder>/save`` (or ``checkpoint``, a ``CKPT+...``
    folder).

    Arguments
    ---------
    folder : str or Path
        The recipe's output folder.
    checkpoint : str or Path, optional
        A specific ``CKPT+...`` folder (or ``wav2vec2.ckpt`` file).
    device : str or torch.device
        Where to put the encoder.
    freeze : bool
        Set ``requires_grad=False`` on every parameter.
    key : str
        The model's key in the hyperparams and checkpoints.

    Returns
    -------
    Wav2Vec2Encoder
        In eval mode. ``encoder(wav, wav_lens) -> (output, hidden_states)``:
        ``wav`` ``[batch, sample]`` 16 kHz audio, ``wav_lens`` ``[batch]``
        relative lengths (or None); ``output`` ``[batch, frame, d_model]`` at
        20 ms frames; ``hidden_states`` the ``num_layers + 1`` tensors of the
        same shape (encoder input and every layer), as MP3S's weighted layer
        sum needs. ``encoder.num_layers`` and ``encoder.d_model`` give the
        sizes.

    Example
    -------
    In a downstream recipe (``wavs`` ``[batch, sample]``, ``wav_lens``
    relative lengths)::

        from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder

        encoder = load_pretrained_encoder("results/wav2vec2_wsm_w32/1986", freeze=True)
        output, hidden_states = encoder(wavs, wav_lens)  # num_layers + 1 states
    """
    encoder = load_pretrained_model(folder, checkpoint, device, key).encoder
    if freeze:
        encoder.requires_grad_(False)
    return encoder
