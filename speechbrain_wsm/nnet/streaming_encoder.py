"""The streaming encoder: band-limited mixers, causal convolutions, LLSA, ``stream()``.

See :mod:`speechbrain_wsm.nnet.streaming` for the mixers (MAA, SA, streaming
WSM) and what is a reconstruction. LLSA (``low_latency=True``) is a
reconstruction, not from the paper.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig
from torch import nn

from speechbrain_wsm.nnet.common import activation_class, valid_frames
from speechbrain_wsm.nnet.encoders import MaskedConvolutionModule, MixerEncoder
from speechbrain_wsm.nnet.registry import build_mixer
from speechbrain_wsm.nnet.streaming import StreamingWSM

__all__ = ["StreamingEncoder", "STREAMING_MIXERS", "TwoStreamConvolutionModule"]


#: Mixers :class:`StreamingEncoder` accepts, and whether each has a two-stream
#: (LLSA) mode.
STREAMING_MIXERS = {"maa": False, "sa": True, "swsm": True, "chunked": False}


def two_stream_conv(conv: nn.Conv1d, b: torch.Tensor, ahead: int) -> torch.Tensor:
    """LLSA's depthwise convolution of ``b`` ``[2 B, C, T]`` (causal stream,
    then look-ahead stream, on the batch axis) with ``conv``'s ``K + ahead``
    taps: taps ``0 .. K - 1`` read frames ``t - K + 1 ... t`` of the stream
    itself; taps ``K ...`` read frames ``t + 1 ... t + ahead`` of the causal
    stream, for the look-ahead stream only (the causal stream sees no future).
    Frames outside the sequence are zeros."""
    if b.shape[0] % 2:
        raise ValueError(
            f"two-stream input must stack [causal; look-ahead] on the batch axis "
            f"(even batch), got batch {b.shape[0]}"
        )
    K = conv.kernel_size[0] - ahead
    C, w = b.shape[1], conv.weight
    past = F.conv1d(F.pad(b, (K - 1, 0)), w[..., :K], conv.bias, groups=C)
    B = b.shape[0] // 2
    future = F.conv1d(F.pad(b[:B, :, 1:], (0, ahead)), w[..., K:], groups=C)
    return torch.cat([past[:B], past[B:] + future])


class TwoStreamConvolutionModule(MaskedConvolutionModule):
    """The Conformer convolution module of an LLSA layer with ``ahead`` frames
    of look-ahead in its look-ahead stream, read from the causal stream of the
    same layer (as the two-stream mixer reads its future): the encoder's
    look-ahead stays ``ahead`` frames whatever the depth (reconstruction, see
    :class:`StreamingEncoder` ``conv_lookahead``). Input ``[2 B, T, C]``:
    causal stream, then look-ahead stream.

    Example
    -------
    >>> conv = TwoStreamConvolutionModule(8, kernel_size=3, ahead=2).eval()
    >>> x = torch.randn(2, 9, 8)
    >>> x2 = x.clone(); x2[0, 6, 0] += 1.0  # causal stream, frame 6
    >>> moved = (conv(x2) - conv(x)).abs().sum(-1).gt(1e-4)
    >>> moved[0].nonzero().flatten().tolist(), moved[1].nonzero().flatten().tolist()
    ([6, 7, 8], [4, 5])
    """

    def __init__(
        self,
        input_size: int,
        kernel_size: int = 31,
        ahead: int = 1,
        activation=nn.SiLU,
        dropout: float = 0.0,
    ):
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        super().__init__(
            input_size, kernel_size, activation=activation, dropout=dropout, causal=True
        )
        bias = self.conv.bias is not None
        self.conv = nn.Conv1d(
            input_size, input_size, kernel_size + ahead, groups=input_size, bias=bias
        )
        #: frames of look-ahead (the last taps of ``conv``)
        self.conv.ahead = ahead

    def depthwise(self, b: torch.Tensor) -> torch.Tensor:
        """:func:`two_stream_conv` of ``b`` ``[2 B, channel, frame]``."""
        return two_stream_conv(self.conv, b, self.conv.ahead)


class StreamingEncoder(MixerEncoder):
    """A :class:`MixerEncoder` that streams: band-limited mixers, causal convolutions.

    Every layer's mixer sees ``left_context`` frames back and
    ``right_context`` ahead; the Conformer / Branchformer depthwise
    convolutions are causal, so they add no look-ahead; there is no absolute
    positional encoding (order comes from the causal convolutions). Look-ahead
    of the stack: ``num_layers * right_context`` frames, or ``right_context``
    with ``low_latency=True``.

    ``mixer="chunked"`` is SpeechBrain's dynamic-chunk attention
    (:class:`~speechbrain_wsm.nnet.streaming.ChunkedAttention`) with a fixed
    ``chunk_size``: a frame sees its own chunk and the ``left_context //
    chunk_size`` chunks before it (``left_context`` a multiple of
    ``chunk_size``, ``right_context`` 0); the look-ahead is the rest of the
    frame's chunk, at most ``chunk_size - 1`` frames whatever the depth, and
    :meth:`stream` takes whole chunks.

    ``low_latency=True`` is LLSA, a reconstruction, not from the paper (the
    DCN two-stream form): the input is duplicated into a causal and a
    look-ahead stream, stacked on the batch axis so every per-frame and causal
    part of the block runs on both with the same weights; the mixer's
    two-stream mode gives the look-ahead stream its future from the causal
    stream of the layer below. Output and hidden states are the look-ahead
    stream's. Training costs about twice the single-stream encoder.

    Arguments
    ---------
    num_layers, d_model, nhead, d_ffn, arch, dropout, kernel_size, activation, layerdrop
        As :class:`MixerEncoder`.
    mixer : str
        ``maa``, ``sa``, ``swsm`` or ``chunked`` (registry names).
    left_context : int
        Frames each mixer sees to the left (``chunked``: whole chunks of them).
    right_context : int
        Frames each mixer sees to the right (``chunked``: 0, the chunk sets it).
    low_latency : bool
        LLSA two-stream mode (``sa`` or ``swsm``).
    conv_lookahead : bool
        LLSA Conformers only: the look-ahead stream's depthwise convolutions
        also read ``right_context`` frames ahead, from the causal stream of
        the same layer (:class:`TwoStreamConvolutionModule`; ``right_context``
        more taps), so the convolution, like the mixer, looks ahead without
        adding to the encoder's look-ahead (reconstruction, not from the
        paper).
    chunk_size : int, optional
        Frames per chunk, for ``mixer="chunked"`` only (required there).
    mixer_kwargs : dict, optional
        Other mixer arguments (``mode``, ``activation`` of ``swsm`` ...).

    Example
    -------
    >>> enc = StreamingEncoder(2, 16, nhead=2, d_ffn=32, mixer="sa",
    ...                        left_context=4, right_context=1).eval()
    >>> x = torch.randn(1, 20, 16)
    >>> full, _ = enc(x)
    >>> y1, state = enc.stream(x[:, :9])
    >>> y2, state = enc.stream(x[:, 9:], state, final=True)
    >>> y1.shape[1], torch.allclose(torch.cat([y1, y2], 1), full, atol=1e-5)
    (7, True)
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        nhead: int = 4,
        d_ffn: int = 1024,
        mixer: str = "sa",
        arch: str = "conformer",
        dropout: float = 0.1,
        kernel_size: int = 31,
        activation="swish",
        layerdrop: float = 0.0,
        left_context: int = 32,
        right_context: int = 0,
        low_latency: bool = False,
        mixer_kwargs: dict | None = None,
        chunk_size: int | None = None,
        conv_lookahead: bool = False,
    ):
        if mixer not in STREAMING_MIXERS:
            raise ValueError(
                f"StreamingEncoder mixer must be one of {list(STREAMING_MIXERS)}, "
                f"got {mixer!r}"
            )
        if low_latency and not STREAMING_MIXERS[mixer]:
            raise ValueError(
                f"low_latency needs a two-stream mixer ('sa' or 'swsm'), got {mixer!r}"
            )
        if not isinstance(left_context, int) or left_context < 0:
            raise ValueError(f"left_context must be an int >= 0, got {left_context!r}")
        if not isinstance(conv_lookahead, bool):
            raise ValueError(
                f"conv_lookahead must be True or False, got {conv_lookahead!r}"
            )
        if conv_lookahead and not (
            low_latency and arch == "conformer" and right_context >= 1
        ):
            raise ValueError(
                "conv_lookahead needs low_latency=True, arch 'conformer' and "
                f"right_context >= 1 (got low_latency={low_latency}, arch={arch!r}, "
                f"right_context={right_context}); set conv_lookahead False"
            )
        if conv_lookahead and kernel_size < right_context:
            raise ValueError(
                f"conv_lookahead needs kernel_size >= right_context, got "
                f"{kernel_size} < {right_context}; set conv_lookahead False"
            )
        kwargs = dict(mixer_kwargs or {})
        if mixer == "chunked":
            kwargs.update(_chunk_kwargs(chunk_size, left_context, right_context))
        elif chunk_size is not None:
            raise ValueError(f"chunk_size is for mixer='chunked', not {mixer!r}")
        else:
            kwargs.update(left_context=left_context, right_context=right_context)
        if low_latency:
            kwargs["two_stream"] = True
        super().__init__(
            num_layers,
            d_model,
            nhead=nhead,
            d_ffn=d_ffn,
            mixer=mixer,
            arch=arch,
            dropout=dropout,
            causal=True,
            kernel_size=kernel_size,
            activation=activation,
            layerdrop=layerdrop,
            positional_encoding="none",
            mixer_kwargs=kwargs,
        )
        self.causal = right_context == 0
        self.left_context, self.right_context = left_context, right_context
        self.low_latency = low_latency
        self.conv_lookahead = conv_lookahead
        if conv_lookahead:
            for layer in self.layers:
                layer.conv = TwoStreamConvolutionModule(
                    d_model,
                    kernel_size,
                    ahead=right_context,
                    activation=activation_class(activation),
                    dropout=dropout,
                )
        #: Frames per chunk of a ``chunked`` encoder (None: a band mixer).
        self.chunk_size = chunk_size
        #: Frames back one layer's output reads of its input (mixer band plus
        #: the causal convolution).
        self.layer_reach = (
            left_context
            + (chunk_size - 1 if chunk_size else 0)
            + (kernel_size - 1 if arch != "transformer" else 0)
        )

    def make_mixer(self, mixer, d_model, nhead, dropout, causal, kwargs) -> nn.Module:
        """A band-limited mixer: its band, not ``causal``, sets its reach (the
        causal flag goes to the convolutions only)."""
        return build_mixer(mixer, d_model, nhead=nhead, dropout=dropout, **kwargs)

    @property
    def lookahead(self) -> int:
        """Look-ahead of the stack by construction, in frames (the tests and
        ``python -m speechbrain_wsm.latency`` measure it)."""
        if self.chunk_size:  # the rest of the chunk, whatever the depth
            return self.layers[0].mixer.right_context
        if self.low_latency:
            return self.right_context
        return self.right_context * len(self.layers)

    def forward(self, x: torch.Tensor, src_key_padding_mask=None):
        """As :meth:`MixerEncoder.forward`; in ``low_latency`` mode the output and
        hidden states are the look-ahead stream's."""
        if not self.low_latency:
            return super().forward(x, src_key_padding_mask)
        valid_frames(x, src_key_padding_mask)
        B = x.shape[0]
        mask = src_key_padding_mask
        if mask is not None:
            mask = torch.cat([mask, mask])
        out, hidden = super().forward(torch.cat([x, x]), mask)
        return out[B:], [h[B:] for h in hidden]

    @contextmanager
    def left_context_as(self, left_context: int):
        """Run every mixer with ``left_context`` frames back (training with
        random left contexts, as dynamic chunk training does); restored after.

        Example
        -------
        >>> enc = StreamingEncoder(1, 8, nhead=2, d_ffn=16, left_context=6)
        >>> with enc.left_context_as(2):
        ...     enc.layers[0].mixer.left_context
        2
        >>> enc.layers[0].mixer.left_context
        6
        """
        if not isinstance(left_context, int) or not 0 <= left_context:
            raise ValueError(f"left_context must be an int >= 0, got {left_context!r}")
        mixers = [layer.mixer for layer in self.layers]
        if self.chunk_size:  # whole chunks of left context
            saved = [m.config for m in mixers]
            chunks = DynChunkTrainConfig(
                self.chunk_size, left_context // self.chunk_size
            )
            try:
                for m in mixers:
                    m.config = chunks
                yield self
            finally:
                for m, config in zip(mixers, saved, strict=True):
                    m.config = config
            return
        saved = [(m.left_context, getattr(m, "left", None)) for m in mixers]
        try:
            for m in mixers:
                m.left_context = left_context
                if isinstance(m, StreamingWSM):
                    m.left = left_context
            yield self
        finally:
            for m, (lc, left) in zip(mixers, saved, strict=True):
                m.left_context = lc
                if left is not None:
                    m.left = left

    # -- streaming ------------------------------------------------------------
    def init_stream(
        self,
        batch: int = 1,
        device=None,
        dtype=torch.float32,
        int8: bool = False,
        compiled: bool = False,
    ) -> dict:
        """An empty stream state for ``batch`` streams (see :meth:`stream`)."""
        from speechbrain_wsm.nnet.streaming_cache import init_state

        state = init_state(self, batch, device, dtype)
        state["final"] = False
        if int8:
            state["int8"] = True
        if compiled:
            state["compiled"] = True
        return state

    def _step(self, x: torch.Tensor, state: dict, end=None):
        """One incremental step: the compiled one (``compiled`` streams) when
        this step has as many frames as the previous one, else the eager one
        (the first chunk and the flush, of other sizes, are not worth a
        compilation)."""
        from speechbrain_wsm.nnet.streaming_cache import compiled_step, encoder_step

        n = x.shape[1]
        if state.get("compiled") and end is None and state.get("last_n") == n:
            y, new = compiled_step(self, x, state)
        else:
            y, new = encoder_step(self, x, state, end=end)
        if state.get("compiled"):
            new.update(compiled=True, last_n=n)
        return y, new

    def stream(
        self,
        chunk: torch.Tensor | None,
        state=None,
        final: bool = False,
        int8: bool = False,
        compiled: bool = False,
    ):
        """Encode the next frames of a stream, incrementally.

        Each layer keeps fixed-size caches (keys and values, window sums, the
        convolution's left context, both LLSA streams:
        :mod:`speechbrain_wsm.nnet.streaming_cache`) and computes only the
        chunk's new frames, so the cost of a chunk does not depend on the
        audio before it.

        Arguments
        ---------
        chunk : torch.Tensor or None
            ``[batch, frame, d_model]``, the next input frames (any number,
            equal-length streams); None with ``final=True`` flushes.
        state : dict, optional
            What the previous call returned; None starts a stream.
        final : bool
            The stream ends with this chunk: emit every remaining frame.
        int8 : bool
            Opt-in, read when ``state`` is None: run the blocks' linear
            layers in dynamic int8 for the whole stream (faster on CPU, no
            longer equal to the offline output:
            :class:`~speechbrain_wsm.nnet.streaming_cache.StepPlan`).
        compiled : bool
            Opt-in, read when ``state`` is None: run every step that has as
            many frames as the one before through ``torch.compile``
            (:func:`~speechbrain_wsm.nnet.streaming_cache.compiled_step`:
            equal to the eager step within float rounding; compiling takes
            a while, once per encoder and chunk size).

        Returns
        -------
        frames : torch.Tensor
            ``[batch, emitted, d_model]``: the next frames of the offline
            output (after the final LayerNorm). Until ``final``, the stream
            is ``lookahead`` frames behind its input.
        state : dict
            ``pos`` (frames fed), ``final`` and one dict of caches per layer
            and stream, of sizes fixed by the model.
        """
        if self.training:
            raise ValueError("stream() needs eval mode (dropout would differ)")
        if chunk is None and not final:
            raise ValueError("chunk=None is only allowed with final=True")
        if state is not None and state.get("final"):
            raise ValueError("this stream was finished (final=True): start a new one")
        if chunk is not None:
            if not isinstance(chunk, torch.Tensor) or not chunk.is_floating_point():
                raise ValueError(
                    "chunk must be a float tensor [batch, frame, "
                    f"{self.d_model}], got {getattr(chunk, 'dtype', type(chunk))}"
                )
            if chunk.dim() != 3 or chunk.shape[-1] != self.d_model:
                raise ValueError(
                    f"chunk must be [batch, frame, {self.d_model}], got {tuple(chunk.shape)}"
                )
        if self.chunk_size and chunk is not None:
            n, C = chunk.shape[1], self.chunk_size
            if n % C and not final:
                raise ValueError(
                    f"a chunked encoder streams whole chunks: feed a multiple of "
                    f"chunk_size={C} frames per call (the last call, final=True, "
                    f"may end with a shorter one), got {n} frames"
                )
        if state is None:
            if chunk is None:
                raise ValueError("stream(None, final=True) before any frame was fed")
            state = self.init_stream(
                chunk.shape[0], chunk.device, chunk.dtype, int8, compiled
            )
        batch = state["layers"][0]["c"]["h"].shape[0]
        if chunk is not None and chunk.shape[0] != batch:
            raise ValueError(
                f"chunk has batch {chunk.shape[0]}, the stream has {batch} streams"
            )
        if self.chunk_size:
            return self._stream_chunks(chunk, state, final, batch)
        la, outs = self.lookahead, []
        if chunk is not None and chunk.shape[1] > 0:
            y, new = self._step(chunk, state)
            drop = max(0, la - state["pos"])
            outs.append(y[:, min(drop, y.shape[1]) :])
            state = {**new, "final": False}
        if final:
            end = state["pos"]
            if end == 0:
                raise ValueError("stream(None, final=True) before any frame was fed")
            if la > 0:
                ref = state["layers"][0]["c"]["h"]
                pad = ref.new_zeros(batch, la, self.d_model)
                y, new = self._step(pad, state, end=end)
                outs.append(y[:, max(0, la - end) :])
                state = new
            state = {**state, "final": True}
        if not outs:
            ref = state["layers"][0]["c"]["h"]
            return ref.new_zeros(batch, 0, self.d_model), state
        return torch.cat(outs, dim=1), state

    def whole_chunks(self, frames, held, final: bool):
        """What :meth:`stream` can take now from ``held`` frames followed by
        ``frames`` (either None): every frame for a band encoder or at the
        end of the stream, else the whole chunks of a ``chunked`` encoder.

        Returns ``(to_feed, held)``, each ``[batch, frame, d_model]`` or None;
        a front end that yields any number of frames keeps ``held`` in its
        state.

        Example
        -------
        >>> enc = StreamingEncoder(1, 8, nhead=2, d_ffn=16, mixer="chunked",
        ...                        chunk_size=4, left_context=4).eval()
        >>> feed, held = enc.whole_chunks(torch.randn(1, 10, 8), None, final=False)
        >>> feed.shape[1], held.shape[1]
        (8, 2)
        """
        if held is not None:
            frames = held if frames is None else torch.cat([held, frames], dim=1)
        if frames is None or final or not self.chunk_size:
            return frames, None
        whole = frames.shape[1] - frames.shape[1] % self.chunk_size
        rest = frames[:, whole:] if whole < frames.shape[1] else None
        return (frames[:, :whole] if whole else None), rest

    def _stream_chunks(self, chunk, state: dict, final: bool, batch: int):
        """:meth:`stream` of a ``chunked`` encoder: one incremental step per
        chunk (``chunk`` holds whole chunks, the last one shorter only when
        ``final``); every frame is output with its chunk, no later."""
        outs = []
        if chunk is not None and chunk.shape[1] > 0:
            for piece in chunk.split(self.chunk_size, dim=1):
                y, state = self._step(piece, state)
                outs.append(y)
        if final and state["pos"] == 0:
            raise ValueError("stream(None, final=True) before any frame was fed")
        state = {**state, "final": final}
        if not outs:
            ref = state["layers"][0]["c"]["h"]
            return ref.new_zeros(batch, 0, self.d_model), state
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0], state


def _chunk_kwargs(chunk_size, left_context: int, right_context: int) -> dict:
    """``ChunkedAttention`` arguments of a ``chunked`` :class:`StreamingEncoder`."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"mixer='chunked' needs chunk_size, an int >= 1 (frames), got {chunk_size!r}"
        )
    if left_context % chunk_size:
        raise ValueError(
            f"mixer='chunked': left_context ({left_context} frames) must be a "
            f"multiple of chunk_size ({chunk_size}): it is whole chunks"
        )
    if right_context != 0:
        raise ValueError(
            f"mixer='chunked': right_context must be 0 (the look-ahead is the rest "
            f"of the chunk, up to chunk_size - 1 frames), got {right_context}"
        )
    return {"chunk_size": chunk_size, "left_chunks": left_context // chunk_size}
