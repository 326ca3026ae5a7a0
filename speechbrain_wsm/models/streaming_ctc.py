"""A streaming CTC recogniser: streamable fbank front end, streaming encoder, CTC head.

The streaming sibling of :class:`~speechbrain_wsm.models.ctc_asr.FbankCTC`
(same evaluation contract: ``forward(wavs, wav_lens) -> (log_probs,
out_lens)`` with relative lengths): the front end is the
:class:`~speechbrain_wsm.nnet.streaming_frontend.StreamingFbankExtractor`
(log-mel filterbank normalised per 10 ms frame, two valid strided
convolutions: 20 ms frames, each reading 85 ms of audio), a linear
projection to ``d_model``, a
:class:`~speechbrain_wsm.nnet.streaming_encoder.StreamingEncoder` (causal
convolutions, band-limited mixers, optionally LLSA) and a linear CTC head.

Training samples the left context of every batch, as SpeechBrain's dynamic
chunk training samples chunk sizes and left contexts for chunked models: with
probability ``dynamic_left_prob`` every mixer sees a left context drawn
uniformly from ``[min_left_context, left_context]`` frames, else the full
``left_context`` (the inference configuration, always used in eval mode). The
look-ahead (``right_context``) is the model's and stays fixed.

:meth:`StreamingFbankCTC.stream` takes audio chunks of any size and returns
the CTC log-probabilities of the frames whose inputs have all arrived, equal
to the offline forward's; each chunk costs the same whatever came before.
"""

from __future__ import annotations

import random

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop
from torch import nn

from speechbrain_wsm.nnet.streaming_encoder import StreamingEncoder
from speechbrain_wsm.nnet.streaming_frontend import (
    StreamingFbankExtractor,
    receptive_field,
)

__all__ = ["StreamingFbankCTC"]


class StreamingFbankCTC(nn.Module):
    """Streamable fbank -> projection -> streaming encoder -> CTC head.

    Arguments
    ---------
    encoder : StreamingEncoder
        The encoder (its ``d_model`` is the model width).
    vocab_size : int
        CTC units, blank at 0.
    n_mels : int
        Mel bins of the front end.
    channels : sequence of int
        Channels of the front end's convolutions.
    kernel_sizes, strides : sequence of int
        Their kernels and strides (``(3, 3)``, ``(2, 1)``: 20 ms frames).
    sample_rate : int
        Waveform rate.
    spec_augment : bool
        Mask up to ``freq_masks`` bands of at most ``freq_mask_width`` latent
        channels and up to ``time_masks`` spans of at most
        ``time_mask_width`` frames of each training utterance.
    freq_masks, freq_mask_width, time_masks, time_mask_width : int
        Masking sizes (latent channels, 20 ms frames).
    dropout : float
        Dropout before the CTC head.
    dynamic_left_prob : float
        Probability that a training batch uses a random left context.
    min_left_context : int
        Smallest left context sampled.
    fbank_norm : str
        ``"frame"``: each filterbank frame standardised over its mel bins;
        ``"running"``: each mel bin by running statistics of the training
        data, fixed at inference
        (:class:`~speechbrain_wsm.nnet.streaming_frontend.RunningFbankNorm`).
    frontend_conv : str
        ``"1d"``: the front end convolves over time with the mel bins as
        channels; ``"2d"``: over time and mel bins, ``channels`` feature maps
        (:class:`~speechbrain_wsm.nnet.frontend.FbankConvFrontEnd`).

    Example
    -------
    >>> enc = StreamingEncoder(2, 32, nhead=2, d_ffn=64, mixer="sa", kernel_size=3,
    ...                        left_context=8, right_context=1, low_latency=True)
    >>> model = StreamingFbankCTC(enc, vocab_size=30, n_mels=20, channels=(16, 16)).eval()
    >>> wav = torch.randn(1, 16000)
    >>> log_probs, lens = model(wav, torch.tensor([1.0]))
    >>> log_probs.shape
    torch.Size([1, 46, 30])
    >>> a, state = model.stream(wav[:, :7000])
    >>> b, state = model.stream(wav[:, 7000:], state, final=True)
    >>> torch.allclose(torch.cat([a, b], 1), log_probs, atol=1e-4)
    True
    """

    def __init__(
        self,
        encoder: StreamingEncoder,
        vocab_size: int,
        n_mels: int = 80,
        channels=(256, 256),
        kernel_sizes=(3, 3),
        strides=(2, 1),
        sample_rate: int = 16000,
        spec_augment: bool = True,
        freq_masks: int = 2,
        freq_mask_width: int = 15,
        time_masks: int = 2,
        time_mask_width: int = 20,
        dropout: float = 0.1,
        dynamic_left_prob: float = 0.6,
        min_left_context: int = 8,
        fbank_norm: str = "frame",
        frontend_conv: str = "1d",
    ):
        super().__init__()
        if not isinstance(encoder, StreamingEncoder):
            raise ValueError(
                "StreamingFbankCTC needs a StreamingEncoder, got "
                f"{type(encoder).__name__}"
            )
        if not 0.0 <= dynamic_left_prob <= 1.0:
            raise ValueError(
                f"dynamic_left_prob must be in [0, 1], got {dynamic_left_prob!r}"
            )
        self.frontend = StreamingFbankExtractor(
            n_mels,
            list(channels),
            list(kernel_sizes),
            list(strides),
            sample_rate,
            norm=fbank_norm,
            conv=frontend_conv,
        )
        self.sample_rate = sample_rate
        self.projection = nn.Linear(self.frontend.out_dim, encoder.d_model)
        self.encoder = encoder
        self.spec_augment = (
            nn.Sequential(
                SpectrogramDrop(0, freq_mask_width, 1, freq_masks, dim=2),
                SpectrogramDrop(0, time_mask_width, 1, time_masks, dim=1),
            )
            if spec_augment
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.d_model, vocab_size)
        self.dynamic_left_prob = dynamic_left_prob
        self.min_left_context = min(min_left_context, encoder.left_context)
        counter = self.frontend.output_lengths
        self.span, self.hop = receptive_field(counter.kernel_sizes, counter.strides)

    # -- latency ----------------------------------------------------------------
    @property
    def frame_ms(self) -> float:
        """Milliseconds per encoder frame."""
        return 1000.0 * self.hop / self.sample_rate

    @property
    def lookahead_ms(self) -> float:
        """Algorithmic look-ahead beyond a frame's own hop: the encoder's
        look-ahead frames plus the front end's window past its hop."""
        return (
            self.encoder.lookahead * self.frame_ms
            + 1000.0 * (self.span - self.hop) / self.sample_rate
        )

    # -- offline ------------------------------------------------------------------
    def _left_context(self) -> int:
        enc = self.encoder
        if self.training and random.random() < self.dynamic_left_prob:
            return random.randint(self.min_left_context, enc.left_context)
        return enc.left_context

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None):
        """``wavs`` ``[batch, sample]``, ``wav_lens`` ``[batch]`` relative ->
        (``log_probs`` ``[batch, frame, unit]``, relative ``out_lens``)."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        samples = (wav_lens * wavs.shape[1]).round().long()
        latents = self.frontend(wavs, samples)
        frames = self.frontend.output_lengths(samples).to(wavs.device)
        T = latents.shape[1]
        pad = torch.arange(T, device=wavs.device) >= frames[:, None]
        if self.training and self.spec_augment is not None:
            latents = self.spec_augment(latents)
        x = self.projection(latents)
        with self.encoder.left_context_as(self._left_context()):
            x, _ = self.encoder(x, src_key_padding_mask=pad)
        logits = self.head(self.dropout(x))
        return logits.float().log_softmax(-1), frames.float() / max(T, 1)

    # -- streaming ----------------------------------------------------------------
    def stream(
        self,
        chunk: torch.Tensor | None,
        state=None,
        final: bool = False,
        int8: bool = False,
        compiled: bool = False,
    ):
        """Feed the next audio samples; get the CTC log-probabilities of the
        frames they complete.

        Arguments
        ---------
        chunk : torch.Tensor or None
            ``[batch, sample]`` float audio at ``sample_rate`` (any number of
            samples); None with ``final=True`` flushes.
        state : dict, optional
            What the previous call returned; None starts a stream.
        final : bool
            The audio ends with this chunk.
        int8 : bool
            Opt-in, read when ``state`` is None: the encoder's linear layers
            in dynamic int8 for this stream (see
            :meth:`StreamingEncoder.stream`; not equal to ``forward``).
        compiled : bool
            Opt-in, read when ``state`` is None: the encoder's steps through
            ``torch.compile`` (see :meth:`StreamingEncoder.stream`).

        Returns
        -------
        log_probs : torch.Tensor
            ``[batch, new frames, unit]``, the next frames of the offline
            ``forward``'s output.
        state : dict
            The sample buffer (under ``span + chunk`` samples), the frames
            waiting for the rest of their chunk (``chunked`` encoders) and
            the encoder's caches.
        """
        if self.training:
            raise ValueError("stream() needs eval mode (dropout would differ)")
        if chunk is None and not final:
            raise ValueError("chunk=None is only allowed with final=True")
        state = dict(state or {"wav": None, "encoder": None, "final": False})
        if state["final"]:
            raise ValueError("this stream was finished (final=True): start a new one")
        if chunk is not None:
            if not isinstance(chunk, torch.Tensor) or not chunk.is_floating_point():
                raise ValueError(
                    "audio chunk must be a float tensor [batch, sample], got "
                    f"{getattr(chunk, 'dtype', type(chunk))}"
                )
            if chunk.dim() != 2:
                raise ValueError(
                    f"audio chunk must be [batch, sample] (one channel per stream), "
                    f"got shape {tuple(chunk.shape)}"
                )
            wav = state["wav"]
            if wav is not None and wav.shape[0] != chunk.shape[0]:
                raise ValueError(
                    f"audio chunk has batch {chunk.shape[0]}, the stream has "
                    f"{wav.shape[0]}"
                )
            state["wav"] = chunk if wav is None else torch.cat([wav, chunk], dim=1)
        wav, x = state["wav"], None
        if wav is not None and wav.shape[1] >= self.span:
            n = (wav.shape[1] - self.span) // self.hop + 1
            latents = self.frontend(wav[:, : (n - 1) * self.hop + self.span])
            x = self.projection(latents)
            state["wav"] = wav[:, n * self.hop :]
        # a chunked encoder takes whole chunks: the rest waits in the state
        x, state["frames"] = self.encoder.whole_chunks(x, state.get("frames"), final)
        if x is None and (not final or state["encoder"] is None):
            if final:
                raise ValueError(
                    f"the stream ended before its first frame ({self.span} samples)"
                )
            state["final"] = final
            return wav.new_zeros(wav.shape[0], 0, self.head.out_features), state
        frames, state["encoder"] = self.encoder.stream(
            x, state["encoder"], final=final, int8=int8, compiled=compiled
        )
        state["final"] = final
        return self.head(frames).float().log_softmax(-1), state


class ChunkStep(nn.Module):
    """One fixed-size streaming step of a :class:`StreamingFbankCTC`, every
    cache an explicit input and output (what ``python -m speechbrain_wsm.export
    --streaming`` writes to ONNX).

    ``forward(wav, wav_buffer, pos, end, *caches) -> (log_probs, first,
    wav_buffer, pos, *caches)``:

    * ``wav`` ``[1, chunk_frames * hop]``: the next audio samples;
    * ``wav_buffer`` ``[1, buffer]``: the samples before them that the front
      end still reads (zeros at the start);
    * ``pos``: int64, the position of the chunk's first latent frame
      (:attr:`start_pos` at the start, then the returned one);
    * ``end``: int64, the number of latent frames of the whole audio once
      known (the last chunks), else a large number;
    * ``log_probs`` ``[1, chunk_frames, unit]``: CTC log-probabilities of the
      frames at positions ``first ... first + chunk_frames - 1``; those below 0
      or from ``end`` on are not frames of the audio.

    Arguments
    ---------
    model : StreamingFbankCTC
        In eval mode.
    chunk_frames : int
        Encoder frames per step.
    """

    def __init__(self, model: StreamingFbankCTC, chunk_frames: int):
        super().__init__()
        from speechbrain_wsm.nnet.streaming_cache import init_state, state_tensors

        if not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be an int >= 1, got {chunk_frames!r}")
        if model.encoder.chunk_size:
            raise ValueError(
                "the exported chunk step streams band encoders (maa, sa, swsm); "
                "a chunked encoder streams in PyTorch (stream()) only"
            )
        self.model, self.chunk_frames = model, chunk_frames
        hop, span = model.hop, model.span
        self.buffer = -(-(span - hop) // hop) * hop
        self.start_pos = -(self.buffer // hop)
        self.chunk_samples = chunk_frames * hop
        self.cache_shapes = [
            tuple(t.shape) for t in state_tensors(init_state(model.encoder, 1))
        ]

    def initial_caches(self) -> list[torch.Tensor]:
        """Zero caches for a new stream."""
        from speechbrain_wsm.nnet.streaming_cache import init_state, state_tensors

        return state_tensors(init_state(self.model.encoder, 1))

    def forward(self, wav, wav_buffer, pos, end, *caches):
        from speechbrain_wsm.nnet.streaming_cache import (
            encoder_step,
            state_from_tensors,
            state_tensors,
        )

        m = self.model
        w = torch.cat([wav_buffer, wav], dim=1)
        x = m.projection(m.frontend.latents(w))
        state = state_from_tensors(m.encoder, caches, pos)
        y, new = encoder_step(m.encoder, x, state, end=end)
        log_probs = m.head(y).float().log_softmax(-1)
        first = pos - m.encoder.lookahead
        new_buffer = w[:, w.shape[1] - self.buffer :]
        return (log_probs, first, new_buffer, new["pos"], *state_tensors(new))
