"""A front end that never reads the future beyond its own analysis windows.

:class:`~speechbrain_wsm.models.wav2vec2.FbankLatentExtractor` standardises
each utterance's filterbank with statistics of the *whole* utterance, so the
first frame depends on the last: it cannot stream. This front end (the same
filterbank and convolutions, :class:`~speechbrain_wsm.nnet.frontend.FbankConvFrontEnd`,
and with ``norm="frame"`` the same state dict) normalises
each 10 ms frame on its own (zero mean, unit variance over its mel bins, no
learned scale; ``norm="frame"``) or every mel bin by running statistics of
the training data, fixed at inference (``norm="running"``, the streamable
stand-in for per-utterance normalisation): a frame depends on its 25 ms
window only. The strided valid
convolutions after it read a bounded number of frames ahead (two for the
default kernels), which is part of the front end's frame latency, not a
growing look-ahead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechbrain_wsm.nnet.frontend import (
    FbankConvFrontEnd,
    FrameCounter,
    check_waveform,
)

__all__ = ["RunningFbankNorm", "StreamingFbankExtractor", "WaveformStreamer"]


class StreamingFbankExtractor(FbankConvFrontEnd):
    """Log-mel filterbank, streamable normalisation, strided convolutions.

    Same arguments and outputs as
    :class:`~speechbrain_wsm.models.wav2vec2.FbankLatentExtractor`; only the
    normalisation differs (``norm="frame"``: per frame over mel bins;
    ``"running"``: per mel bin by running training statistics,
    :class:`RunningFbankNorm`; never per utterance over frames), so a frame's
    latent never depends on audio after its receptive field.

    Example
    -------
    >>> fe = StreamingFbankExtractor(n_mels=20, channels=[16, 16])
    >>> wav = torch.randn(1, 16000)
    >>> y = fe(wav)
    >>> torch.allclose(fe(wav[:, :8000]), y[:, : fe.output_lengths(8000)], atol=1e-5)
    True
    """

    def __init__(self, *args, norm: str = "frame", momentum: float = 0.01, **kw):
        super().__init__(*args, **kw)
        if norm not in ("frame", "running"):
            raise ValueError(
                f"fbank_norm / norm must be 'frame' or 'running', got {norm!r}"
            )
        # only with norm="running": the default keeps FbankConvFrontEnd's state dict
        self.running = (
            RunningFbankNorm(self.fbank.n_mels, momentum) if norm == "running" else None
        )

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """``wav`` ``[batch, sample]`` -> latents ``[batch, frame, out_dim]``;
        ``lengths`` (samples) only zero the padded frames (and, in training
        with ``norm="running"``, keep them out of the statistics)."""
        check_waveform(wav, self.output_lengths)
        return self.latents(wav, lengths)

    def power_fbank(self, wav: torch.Tensor) -> torch.Tensor:
        """Mel filterbank energies ``[batch, frame, n_mels]``, in float64.

        The values of SpeechBrain's ``Filterbank(spectral_magnitude(STFT))``
        (non-centred Hamming windows, power spectrum), computed in double
        precision: the quietest bins' log energies then no longer depend on
        which float32 FFT computed them, so a runtime (onnxruntime) gives the
        same outputs as PyTorch within 1e-4 instead of 1e-3.
        """
        st = self.stft
        frames = wav.double().unfold(1, st.n_fft, st.hop_length)
        window = st.window.to(frames)
        if st.win_length < st.n_fft:  # torch.stft centres a short window
            left = (st.n_fft - st.win_length) // 2
            window = F.pad(window, (left, st.n_fft - st.win_length - left))
        spec = torch.fft.rfft(frames * window, dim=-1)
        power = spec.real.square() + spec.imag.square()
        n_bins = power.shape[-1]
        eye = torch.eye(n_bins, device=wav.device)[None]
        with torch.no_grad():
            matrix = self.fbank(eye)[0].double()  # the filterbank matrix
        return torch.matmul(power, matrix)

    def latents(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """:meth:`forward` without the input checks (which read the length as a
        Python int: ``torch.export`` and ONNX export trace through this one)."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            feats = torch.log(self.power_fbank(wav).clamp(min=1e-10)).float()
            pad = None
            if lengths is not None:
                counter = self.output_lengths  # its first stage: the STFT
                stft = FrameCounter(counter.kernel_sizes[:1], counter.strides[:1])
                frames = stft(lengths).to(feats.device)
                pad = (
                    torch.arange(feats.shape[1], device=feats.device) >= frames[:, None]
                )
            if self.running is not None:
                feats = self.running(feats, pad)
            else:
                feats = F.layer_norm(feats, feats.shape[-1:])
            if pad is not None:
                feats = feats.masked_fill(pad.unsqueeze(-1), 0.0)
        return self.convolve(feats)


class RunningFbankNorm(torch.nn.Module):
    """Per-mel-bin standardisation by running statistics of the training data.

    The streamable stand-in for per-utterance normalisation: in training each
    batch's mean and variance of every bin over its valid frames move the
    running ones (the first batch sets them), and every frame is standardised
    by the running statistics; in eval mode they are fixed, so a frame depends
    on itself only. The statistics are buffers: saved with the model, exported
    as constants.

    Example
    -------
    >>> norm = RunningFbankNorm(3)
    >>> x = torch.randn(2, 50, 3) * 4 + 7
    >>> y = norm(x)  # training: the first batch sets the statistics
    >>> bool(y.mean().abs() < 0.1), bool((y.std() - 1).abs() < 0.1)
    (True, True)
    >>> _ = norm.eval()
    >>> torch.equal(norm(x[:, :5]), y[:, :5])  # eval: frame by frame
    True
    """

    def __init__(self, n_mels: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("var", torch.ones(n_mels))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def forward(self, feats: torch.Tensor, pad: torch.Tensor | None = None):
        """``feats`` ``[batch, frame, n_mels]``; ``pad`` ``[batch, frame]``
        marks the padded frames, left out of the statistics."""
        if self.training:
            # masked sums, no boolean indexing or .item(): no host sync per step
            with torch.no_grad():
                x = feats.float()
                drop = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
                drop = (drop if pad is None else pad).unsqueeze(-1)
                n = (~drop).sum((0, 1)).float()
                mean = x.masked_fill(drop, 0.0).sum((0, 1)) / n.clamp(min=1)
                var = (x - mean).square().masked_fill(drop, 0.0).sum((0, 1))
                var = var / (n - 1).clamp(min=1)
                usable = n > 1  # a variance needs two frames
                first = torch.where(self.batches == 0, 1.0, self.momentum)
                w = first * usable
                self.mean.lerp_(mean, w)
                self.var.lerp_(var, w)
                self.batches += usable.long().squeeze()
        return (feats - self.mean) * torch.rsqrt(self.var + self.eps)


def receptive_field(kernel_sizes, strides) -> tuple[int, int]:
    """``(span, hop)`` in input samples of one output frame of a stack of valid
    strided windows: output ``j`` reads samples ``[j * hop, j * hop + span)``.

    Example
    -------
    >>> receptive_field([400, 3, 3], [160, 2, 1])  # the fbank front end
    (1360, 320)
    """
    span, hop = 1, 1
    for k, st in zip(kernel_sizes, strides, strict=True):
        span += (k - 1) * hop
        hop *= st
    return span, hop


class WaveformStreamer:
    """Stream a whole wav2vec 2.0 encoder from audio: front end, projection, encoder.

    Wraps a :class:`~speechbrain_wsm.models.wav2vec2.Wav2Vec2Encoder` (what
    ``load_pretrained_encoder`` returns for a streaming recipe) whose front
    end is a :class:`StreamingFbankExtractor` (valid windows, per-frame
    normalisation), whose context network has no positional convolution, and
    whose encoder is a
    :class:`~speechbrain_wsm.nnet.streaming_encoder.StreamingEncoder`.
    :meth:`stream` takes audio chunks of any size and returns the next frames
    of the offline ``encoder(wav)[0]``: latent frame ``j`` is computed once
    its samples ``[j * hop, j * hop + span)`` have arrived, from a buffer of at
    most ``span + chunk`` samples.

    Arguments
    ---------
    encoder : Wav2Vec2Encoder
        In eval mode.

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import ContextNetwork, Wav2Vec2Encoder
    >>> from speechbrain_wsm.nnet.streaming_encoder import StreamingEncoder
    >>> enc = StreamingEncoder(2, 16, nhead=2, d_ffn=32, left_context=4,
    ...                        right_context=1, kernel_size=3)
    >>> fe = StreamingFbankExtractor(n_mels=20, channels=[16, 16])
    >>> model = Wav2Vec2Encoder(fe, ContextNetwork(enc, 16)).eval()
    >>> wav = torch.randn(1, 8000)
    >>> streamer = WaveformStreamer(model)
    >>> a, state = streamer.stream(wav[:, :3000])
    >>> b, state = streamer.stream(wav[:, 3000:], state, final=True)
    >>> torch.allclose(torch.cat([a, b], 1), model(wav)[0], atol=1e-5)
    True
    """

    def __init__(self, encoder):
        fe, context = encoder.latent_extractor, encoder.context
        if not isinstance(fe, StreamingFbankExtractor):
            raise ValueError(
                "WaveformStreamer needs a StreamingFbankExtractor front end "
                f"(per-frame or running normalisation), got {type(fe).__name__}"
            )
        if getattr(context, "pos_conv", None) is not None:
            raise ValueError(
                "WaveformStreamer needs pos_conv_kernel 0: the positional "
                "convolution looks ahead"
            )
        if not hasattr(context.encoder, "stream"):
            raise ValueError(
                f"the context encoder {type(context.encoder).__name__} has no stream()"
            )
        self.encoder = encoder
        counter = fe.output_lengths
        self.span, self.hop = receptive_field(counter.kernel_sizes, counter.strides)

    def stream(self, chunk: torch.Tensor | None, state=None, final: bool = False):
        """Feed ``chunk`` ``[batch, sample]`` (None with ``final`` to flush).

        Returns
        -------
        frames : torch.Tensor
            ``[batch, emitted, d_model]``, the next frames of the offline output.
        state : dict
            Sample buffer and the encoder's stream state.
        """
        state = dict(state or {"wav": None, "encoder": None})
        if chunk is None and not final:
            raise ValueError("chunk=None is only allowed with final=True")
        if chunk is not None:
            if chunk.dim() != 2:
                raise ValueError(
                    f"chunk must be [batch, sample], got {tuple(chunk.shape)}"
                )
            wav = state["wav"]
            state["wav"] = chunk if wav is None else torch.cat([wav, chunk], dim=1)
        wav, x = state["wav"], None
        if wav is not None and wav.shape[1] >= self.span:
            n = (wav.shape[1] - self.span) // self.hop + 1
            latents = self.encoder.latent_extractor(
                wav[:, : (n - 1) * self.hop + self.span]
            )
            x = self.encoder.context.input_proj(latents)
            state["wav"] = wav[:, n * self.hop :]
        enc = self.encoder.context.encoder
        if hasattr(enc, "whole_chunks"):  # a chunked encoder takes whole chunks
            x, state["frames"] = enc.whole_chunks(x, state.get("frames"), final)
        if x is None and not final:
            return wav.new_zeros(wav.shape[0], 0, enc.d_model), state
        frames, state["encoder"] = enc.stream(x, state["encoder"], final=final)
        return frames, state
