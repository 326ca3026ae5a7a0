"""A supervised CTC speech recogniser trained from scratch: fbank, subsampling, encoder, head.

The "no pretraining" baseline of every table and the SummaryMixing paper's
supervised comparison in miniature: log mel filterbanks (SpeechBrain's
``Fbank``), per-utterance mean and variance normalisation over the valid
frames, SpecAugment-style time and frequency masking in training,
convolutional subsampling (SpeechBrain's 2-D ``ConvolutionFrontEnd``, the
front end of its Conformer recipes, or 1-D convolutions over time with the
mel bins as channels: two blocks, stride 2 each by default, 4x fewer
frames, 40 ms per frame), a linear projection to ``d_model``, any :class:`MixerEncoder`
(the mixer is a YAML choice), and a linear CTC head.

The module follows the evaluation contract of
:mod:`speechbrain_wsm.evaluate`: ``forward(wavs, wav_lens) -> (log_probs,
out_lens)`` with relative lengths at this edge; inside, absolute frame
lengths and a boolean padding mask travel with the tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from inspect import signature

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.lengths import (
    relative_to_absolute,
    relative_to_padding_mask,
    standardize,
)
from speechbrain_wsm.nnet.frontend import ConvBlock, MelWarp

__all__ = ["FbankCTC"]


class FbankCTC(nn.Module):
    """Fbank -> normalisation -> (masking) -> conv subsampling -> encoder -> CTC head.

    Arguments
    ---------
    encoder : nn.Module
        ``encoder(x [B, T, d_model], src_key_padding_mask) -> (y, hidden_states)``
        (a :class:`~speechbrain_wsm.nnet.encoders.MixerEncoder`).
    vocab_size : int
        CTC units, blank at 0.
    d_model : int
        Encoder width.
    n_mels : int
        Mel filterbank channels.
    sample_rate : int
        Waveform rate.
    cnn_channels : tuple of int
        Channels of the two subsampling blocks.
    cnn_strides : tuple of int
        Strides of the two blocks, over time and mel channels: ``(2, 2)``, 4x
        subsampling (40 ms frames), SpeechBrain's Conformer default; ``(2, 1)``
        keeps 20 ms frames, which character CTC needs on fast speech (at
        40 ms, 15 characters a second fill 60 % of the frames).
    vtlp : bool
        Vocal tract length perturbation in training (:class:`MelWarp`): each
        utterance's mel axis warped by a factor drawn from ``vtlp_range``,
        as a speaker with a longer or shorter vocal tract would sound; for
        voices never heard in training.
    vtlp_range : tuple of float
        Lowest and highest warp factor.
    inter_ctc_layers : sequence of int
        Intermediate CTC (Lee and Watanabe, 2021): the outputs of these
        encoder layers (from 1, below the last) go through the encoder's final
        LayerNorm and the same CTC head; in training, ``forward`` returns
        their log-probabilities as a third item, and the recipe's loss mixes
        them in with ``inter_ctc_weight``.
    self_condition : bool
        Self-conditioned CTC (Nozaki and Komatsu, 2021): each intermediate
        layer's posteriors, projected back to ``d_model``, are added to its
        output before the next layer reads it, in training and inference.
    spec_augment : bool
        Mask up to ``freq_masks`` bands of at most ``freq_mask_width`` mel
        channels and up to ``time_masks`` spans of at most
        ``time_mask_width`` frames of each training utterance.
    freq_masks, freq_mask_width, time_masks, time_mask_width : int
        Masking sizes (10 ms frames before subsampling).
    dropout : float
        Dropout before the CTC head.
    frontend_conv : str
        ``"2d"``: SpeechBrain's ``ConvolutionFrontEnd`` over time and mel
        bins (``cnn_channels`` are feature maps; the projection reads
        ``cnn_channels[-1] * n_mels / 4`` features a frame). ``"1d"``:
        ``Conv1d -> LayerNorm -> GELU`` blocks over time, the mel bins as
        channels (``cnn_channels`` are the latent's width), "same" padding;
        the streaming recogniser's front-end blocks. At the demo's size
        (4 x 144, bf16, one CPU thread) the 1-D blocks ``[144, 144]`` take
        about a fifth of the 2-D ``[16, 32]`` blocks' time (CTC README).
    frontend_dropout : float
        Dropout after each convolution of the subsampling front end
        (SpeechBrain's ``ConvolutionFrontEnd`` default, 0.1). The recipes tie
        it to the encoder's ``dropout``: left at 0.1 while the rest was off,
        it cost 14 % of a CPU training step (the masks of the largest
        activations of the model) and regularised a model that underfits.

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> enc = MixerEncoder(2, 32, nhead=2, d_ffn=64, mixer="wsm", mixer_kwargs={"window_size": 4})
    >>> model = FbankCTC(enc, vocab_size=30, d_model=32, cnn_channels=(8, 8)).eval()
    >>> log_probs, lens = model(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> log_probs.shape, lens.tolist()
    (torch.Size([2, 26, 30]), [1.0, 0.5])
    """

    def __init__(
        self,
        encoder: nn.Module,
        vocab_size: int,
        d_model: int,
        n_mels: int = 80,
        sample_rate: int = 16000,
        cnn_channels: tuple[int, int] = (64, 32),
        cnn_strides: tuple[int, int] = (2, 2),
        spec_augment: bool = True,
        freq_masks: int = 2,
        freq_mask_width: int = 15,
        time_masks: int = 2,
        time_mask_width: int = 40,
        dropout: float = 0.1,
        frontend_dropout: float = 0.1,
        frontend_conv: str = "2d",
        vtlp: bool = False,
        vtlp_range: tuple[float, float] = (0.9, 1.1),
        inter_ctc_layers: Sequence[int] = (),
        self_condition: bool = False,
    ):
        super().__init__()
        depth = len(getattr(encoder, "layers", ()))
        self.inter_ctc_layers = sorted(set(inter_ctc_layers))
        if (
            self.inter_ctc_layers
            and "between" not in signature(encoder.forward).parameters
        ):
            raise UserValueError(
                f"inter_ctc_layers needs an encoder with a between-layer hook "
                f"(MixerEncoder); {type(encoder).__name__} has none"
            )
        if any(not 1 <= n < depth for n in self.inter_ctc_layers):
            raise UserValueError(
                f"inter_ctc_layers must be encoder layers from 1 to {depth - 1} "
                f"(below the last), got {list(inter_ctc_layers)}"
            )
        if self_condition and not self.inter_ctc_layers:
            raise UserValueError("self_condition needs inter_ctc_layers")
        if frontend_conv not in ("1d", "2d"):
            raise UserValueError(
                f"frontend_conv must be '1d' or '2d', got {frontend_conv!r}"
            )
        self.fbank = Fbank(sample_rate=sample_rate, n_mels=n_mels)
        bank = self.fbank.compute_fbanks
        self.vtlp = MelWarp(bank.f_central, bank.f_max, *vtlp_range) if vtlp else None
        self.spec_augment = (
            nn.Sequential(
                SpectrogramDrop(0, freq_mask_width, 1, freq_masks, dim=2),
                SpectrogramDrop(0, time_mask_width, 1, time_masks, dim=1),
            )
            if spec_augment
            else None
        )
        if frontend_conv == "1d":
            dims = [n_mels, *cnn_channels]
            self.subsampling = nn.Sequential(
                *(
                    ConvBlock(i, o, 3, s, frontend_dropout, padding=1)
                    for i, o, s in zip(dims[:-1], dims[1:], cnn_strides, strict=True)
                )
            )
            sub_freq = 1
        else:
            self.subsampling = ConvolutionFrontEnd(
                input_shape=(8, 10, n_mels),
                num_blocks=2,
                num_layers_per_block=1,
                out_channels=tuple(cnn_channels),
                kernel_sizes=(3, 3),
                strides=tuple(cnn_strides),
                residuals=(False, False),
                dropout=frontend_dropout,
            )
            sub_freq = n_mels  # "same" convolutions: each stride divides, rounding up
            for stride in cnn_strides:
                sub_freq = math.ceil(sub_freq / stride)
        self.projection = nn.Linear(cnn_channels[-1] * sub_freq, d_model)
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, vocab_size)
        self.condition = nn.Linear(vocab_size, d_model) if self_condition else None

    def features(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """Normalised log mel filterbanks ``[batch, frame, n_mels]``, padding zeroed."""
        with torch.autocast(wavs.device.type, enabled=False):
            feats = self.fbank(wavs.float())
            if self.vtlp is not None:  # an identity in eval()
                feats = self.vtlp(feats)
        return standardize(feats, relative_to_absolute(wav_lens, feats.shape[1]))

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None):
        """``wavs`` ``[batch, sample]``, ``wav_lens`` ``[batch]`` relative ->
        (``log_probs`` ``[batch, frame, unit]``, relative ``out_lens``)."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.features(wavs, wav_lens)
        if self.training and self.spec_augment is not None:
            feats = self.spec_augment(feats)
        x = self.subsampling(feats)  # [B, T/4, F/4, C] (2-D) or [B, T/4, C] (1-D)
        x = self.projection(x.flatten(2))
        pad = relative_to_padding_mask(wav_lens, x.shape[1])
        inter = []
        logits = self.head(self.dropout(self.encode(x, pad, inter)))
        if inter:
            return logits.float().log_softmax(-1), wav_lens, inter
        return logits.float().log_softmax(-1), wav_lens

    def encode(
        self,
        x: torch.Tensor,
        pad: torch.Tensor | None = None,
        inter: list | None = None,
    ) -> torch.Tensor:
        """The encoder's output ``[batch, frame, d_model]`` for projected
        features ``x``, self-conditioned where the model is; in training, the
        intermediate CTC log-probabilities are appended to ``inter``."""
        heads = self.training and inter is not None and self.inter_ctc_layers
        if self.condition is None and not heads:
            return self.encoder(x, src_key_padding_mask=pad)[0]

        def between(n: int, h: torch.Tensor) -> torch.Tensor:
            if n not in self.inter_ctc_layers:
                return h
            logits = self.head(self.encoder.norm(h))
            if heads:
                inter.append(logits.float().log_softmax(-1))
            if self.condition is None:
                return h
            return h + self.condition(logits.softmax(-1))

        return self.encoder(x, src_key_padding_mask=pad, between=between)[0]
