"""Filterbank front-end pieces shared by the offline and streaming front ends.

:class:`FbankConvFrontEnd` holds what
:class:`~speechbrain_wsm.models.wav2vec2.FbankLatentExtractor` (per-utterance
standardisation) and
:class:`~speechbrain_wsm.nnet.streaming_frontend.StreamingFbankExtractor`
(per-frame or running normalisation) share: the STFT, the mel filterbank, the strided
convolution blocks and their frame counts. It lives at the layer floor
(``nnet``) so that the streaming front end needs nothing from ``models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from speechbrain.processing.features import STFT, Filterbank
from torch import nn

from speechbrain_wsm.errors import UserValueError

__all__ = [
    "FrameCounter",
    "check_waveform",
    "ConvBlock",
    "ConvBlock2d",
    "FbankConvFrontEnd",
    "MelWarp",
]


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


def check_waveform(
    wav: torch.Tensor, frame_counter: FrameCounter | None = None
) -> None:
    """Raise a ``ValueError`` unless ``wav`` is ``[batch, sample]`` and long enough
    for ``frame_counter`` to make at least one frame."""
    if wav.dim() != 2:
        raise ValueError(
            f"expected a waveform batch [batch, sample], got shape {tuple(wav.shape)}"
        )
    if frame_counter is not None and int(frame_counter(wav.shape[1])) < 1:
        raise ValueError(
            f"{wav.shape[1]} samples are too few for the front end "
            f"({frame_counter}): it makes no frame"
        )


class FbankConvFrontEnd(nn.Module):
    """Log-mel filterbank (25 ms windows every 10 ms, not centred) and
    ``Conv -> LayerNorm -> GELU`` blocks (1-D or 2-D, ``conv``) with a final
    LayerNorm; subclasses say how the filterbank is normalised (their
    ``forward``).

    Arguments
    ---------
    n_mels : int
        Mel bins.
    channels : sequence of int
        Output channels of each convolution; the last is ``out_dim`` (2-D:
        ``out_dim`` is the last times the remaining mel bins).
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
    conv : str
        ``"1d"``: convolutions over time with the mel bins as channels;
        ``"2d"``: over time and mel bins (``channels`` are then feature maps;
        each block halves the bins, "same" padding along them, valid along
        time as in 1-D), flattened to ``channels[-1] * bins`` features per
        frame; like SpeechBrain's 2-D subsampling of the offline recipes,
        which divides the bins by each time stride instead of by 2.

    Example
    -------
    >>> FbankConvFrontEnd(n_mels=20, channels=[16, 16]).output_lengths(16000)
    tensor(46)
    >>> FbankConvFrontEnd(n_mels=20, channels=[4, 8], conv="2d").out_dim  # 8 x 5 bins
    40
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
        conv: str = "1d",
    ):
        super().__init__()
        if conv not in ("1d", "2d"):
            raise ValueError(f"conv must be '1d' or '2d', got {conv!r}")
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
        self.conv2d = conv == "2d"
        blocks, in_dim, bins = [], 1 if self.conv2d else n_mels, n_mels
        for out_dim, k, s in zip(channels, kernel_sizes, strides, strict=True):
            block = ConvBlock2d if self.conv2d else ConvBlock
            blocks.append(block(in_dim, out_dim, k, s, dropout))
            in_dim, bins = out_dim, (bins + 1) // 2
        self.blocks = nn.ModuleList(blocks)
        if self.conv2d:
            in_dim *= bins
        self.norm = nn.LayerNorm(in_dim)
        self.out_dim = in_dim
        hop = self.stft.hop_length
        self.output_lengths = FrameCounter([n_fft, *kernel_sizes], [hop, *strides])
        self._fbank_frames = FrameCounter([n_fft], [hop])

    def convolve(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised filterbank ``[batch, frame, n_mels]`` -> latents
        ``[batch, frame', out_dim]`` (the blocks and the final LayerNorm)."""
        x = feats.unsqueeze(-1) if self.conv2d else feats
        for block in self.blocks:
            x = block(x)
        return self.norm(x.flatten(2) if self.conv2d else x)


class ConvBlock(nn.Module):
    """``Conv1d -> LayerNorm (channels) -> GELU -> Dropout`` on [B, T, C]:
    valid in time (``padding=0``, the streaming front ends) or padded by
    ``padding`` frames each side (the offline recogniser's "same" blocks)."""

    def __init__(self, in_dim, out_dim, kernel_size, stride, dropout, padding=0):
        super().__init__()
        self.conv = nn.Conv1d(
            in_dim, out_dim, kernel_size, stride, padding=padding, bias=False
        )
        self.norm = nn.LayerNorm(out_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.act(self.norm(x)))


class ConvBlock2d(nn.Module):
    """``Conv2d -> LayerNorm (channels) -> GELU -> Dropout`` on ``[B, T, F, C]``:
    kernel ``(kernel_size, 3)``, stride ``(stride, 2)``; valid along time (a
    frame reads a bounded window, as :class:`ConvBlock`), "same" along the
    mel bins (``ceil(F / 2)`` out)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride, dropout):
        super().__init__()
        self.conv = nn.Conv2d(
            in_ch, out_ch, (kernel_size, 3), (stride, 2), padding=(0, 1), bias=False
        )
        self.norm = nn.LayerNorm(out_ch)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.drop(self.act(self.norm(x)))


class MelWarp(nn.Module):
    """Vocal tract length perturbation of log mel filterbanks, one factor per utterance.

    VTLP (Jaitly and Hinton, 2013) rescales the frequency axis as a longer or
    shorter vocal tract would: what a speaker says at ``f`` Hz, a warped
    speaker says at ``alpha * f`` (below ``boundary`` of the top frequency;
    above it a straight line that keeps the top fixed). Here the warp reads
    each band's value off the unwarped bands at the frequency that maps onto
    its centre, interpolated linearly between the two nearest centres:
    cheap (a gather over the bands of features already computed). In
    training only; an identity in ``eval()``.

    Written for this project: neither SpeechBrain nor torchaudio ships a
    VTLP, and speed perturbation changes tempo and pitch with the formants.

    Arguments
    ---------
    centres_hz : torch.Tensor
        ``[n_mels]`` centre frequencies of the bands, increasing (SpeechBrain's
        ``Filterbank.f_central``).
    f_max : float
        Top frequency of the filterbank, which the warp keeps fixed.
    low, high : float
        Range of the per-utterance factor ``alpha`` (uniform), both above
        ``boundary``.
    boundary : float
        Share of ``f_max`` below which the warp is ``alpha * f``, in (0, 1).

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> bank = Fbank(n_mels=40).compute_fbanks
    >>> warp = MelWarp(bank.f_central, bank.f_max).train()
    >>> feats = torch.randn(2, 50, 40)
    >>> warp(feats).shape
    torch.Size([2, 50, 40])
    >>> torch.equal(warp.eval()(feats), feats)
    True
    """

    def __init__(
        self,
        centres_hz: torch.Tensor,
        f_max: float,
        low: float = 0.9,
        high: float = 1.1,
        boundary: float = 0.8,
    ):
        super().__init__()
        if not 0.0 < boundary < 1.0:
            raise UserValueError(
                f"MelWarp's boundary must be in (0, 1), got {boundary}"
            )
        if not boundary < low <= high:
            raise UserValueError(
                f"MelWarp needs {boundary} (boundary) < low <= high, got {low}, {high}"
            )
        self.low, self.high = low, high
        self.f_max, self.knee = float(f_max), boundary * float(f_max)
        self.register_buffer(
            "centres_hz", centres_hz.detach().float().clone(), persistent=False
        )

    def source_bands(self, alpha: torch.Tensor) -> torch.Tensor:
        """Fractional band ``[batch, n_mels]`` each warped band reads, for factors ``[batch]``."""
        c, a, knee = self.centres_hz, alpha[:, None], self.knee
        # the unwarped frequency that lands on each centre: c / a below the
        # knee, then a line from (knee, knee / a) to (f_max, f_max)
        above = knee / a + (c - knee) * (self.f_max - knee / a) / (self.f_max - knee)
        src = torch.where(c <= knee, c / a, above).contiguous()
        i = torch.searchsorted(c, src).clamp(1, c.numel() - 1)
        lo, hi = c[i - 1], c[i]
        return ((i - 1) + (src - lo) / (hi - lo)).clamp(0.0, c.numel() - 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats`` ``[batch, frame, n_mels]`` -> the same, warped (training only)."""
        if not self.training:
            return feats
        B, T, F = feats.shape
        alpha = torch.empty(B, device=feats.device).uniform_(self.low, self.high)
        band = self.source_bands(alpha)
        lo = band.floor().long()
        hi = (lo + 1).clamp(max=F - 1)
        w = (band - lo).to(feats.dtype)[:, None, :]
        lo_vals = feats.gather(2, lo[:, None, :].expand(B, T, F))
        hi_vals = feats.gather(2, hi[:, None, :].expand(B, T, F))
        return lo_vals + (hi_vals - lo_vals) * w
