"""The streaming encoder: band-limited mixers, causal convolutions, LLSA, ``stream()``.

See :mod:`speechbrain_wsm.nnet.streaming` for the mixers (MAA, SA, streaming
WSM) and what is a reconstruction. LLSA (``low_latency=True``) is a
reconstruction, not from the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.nnet.registry import build_mixer
from speechbrain_wsm.nnet.streaming import StreamingWSM
from speechbrain_wsm.nnet.summary_mixing import valid_frames

__all__ = ["StreamingEncoder", "STREAMING_MIXERS"]


#: Mixers :class:`StreamingEncoder` accepts, and whether each has a two-stream
#: (LLSA) mode.
STREAMING_MIXERS = {"maa": False, "sa": True, "swsm": True}


class StreamingEncoder(MixerEncoder):
    """A :class:`MixerEncoder` that streams: band-limited mixers, causal convolutions.

    Every layer's mixer sees ``left_context`` frames back and
    ``right_context`` ahead; the Conformer / Branchformer depthwise
    convolutions are causal, so they add no look-ahead; there is no absolute
    positional encoding (order comes from the causal convolutions). Look-ahead
    of the stack: ``num_layers * right_context`` frames, or ``right_context``
    with ``low_latency=True``.

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
        ``maa``, ``sa`` or ``swsm`` (registry names).
    left_context : int
        Frames each mixer sees to the left.
    right_context : int
        Frames each mixer sees to the right.
    low_latency : bool
        LLSA two-stream mode (``sa`` or ``swsm``).
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
        kwargs = dict(mixer_kwargs or {})
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
        #: Frames back one layer's output reads of its input (mixer band plus
        #: the causal convolution).
        self.layer_reach = left_context + (
            kernel_size - 1 if arch != "transformer" else 0
        )

    def make_mixer(self, mixer, d_model, nhead, dropout, causal, kwargs) -> nn.Module:
        """A band-limited mixer: its band, not ``causal``, sets its reach (the
        causal flag goes to the convolutions only)."""
        return build_mixer(mixer, d_model, nhead=nhead, dropout=dropout, **kwargs)

    @property
    def lookahead(self) -> int:
        """Look-ahead of the stack by construction, in frames (the tests and
        ``python -m speechbrain_wsm.latency`` measure it)."""
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

    # -- streaming ------------------------------------------------------------
    def stream(self, chunk: torch.Tensor | None, state=None, final: bool = False):
        """Encode the next frames of a stream.

        Arguments
        ---------
        chunk : torch.Tensor or None
            ``[batch, frame, d_model]``, the next input frames (any number,
            equal-length streams); None with ``final=True`` flushes.
        state : list, optional
            What the previous call returned; None starts a stream.
        final : bool
            The stream ends with this chunk: emit every remaining frame.

        Returns
        -------
        frames : torch.Tensor
            ``[batch, emitted, d_model]``: the next frames of the offline
            output (after the final LayerNorm). Until ``final``, the stream
            is ``lookahead`` frames behind its input.
        state : list
            One dict per layer: bounded buffers of at most ``layer_reach +
            right_context + chunk`` frames and, for ``swsm``, a running sum
            and count.
        """
        if self.training:
            raise ValueError("stream() needs eval mode (dropout would differ)")
        if state is None:
            state = [None] * len(self.layers)
        if chunk is None:
            if not final:
                raise ValueError("chunk=None is only allowed with final=True")
            c = s = None
        else:
            if chunk.dim() != 3 or chunk.shape[-1] != self.d_model:
                raise ValueError(
                    f"chunk must be [batch, frame, {self.d_model}], got {tuple(chunk.shape)}"
                )
            c = s = chunk
        new_state = []
        for layer, st in zip(self.layers, state, strict=True):
            c, s, st = self._stream_layer(layer, c, s, st, final)
            new_state.append(st)
        out = s if self.low_latency else c
        if out is None:
            raise ValueError("stream(None, final=True) before any frame was fed")
        return self.norm(out), new_state

    def _stream_layer(self, layer, c_new, s_new, st, final):
        """One layer: append the new input frames, recompute on the buffer,
        emit the frames whose inputs have all arrived, trim the buffer."""
        two = self.low_latency
        R = self.right_context
        if st is None:
            st = {"start": 0, "c": None, "s": None, "done_c": 0, "done_s": 0}
            st["prefix"] = None

        def cat(buf, new):
            if new is None or new.shape[1] == 0:
                return buf
            return new if buf is None else torch.cat([buf, new], dim=1)

        st = dict(st)
        st["c"] = cat(st["c"], c_new)
        if two:
            st["s"] = cat(st["s"], s_new)
        if st["c"] is None:
            return c_new, s_new, st
        start = st["start"]
        avail_c = start + st["c"].shape[1]
        if two:
            avail_s = start + (0 if st["s"] is None else st["s"].shape[1])
            emit_c = avail_c
            emit_s = avail_s if final else min(avail_s, avail_c - R)
        else:
            emit_c = avail_c if final else avail_c - R
            emit_s = emit_c
        emit_c, emit_s = max(emit_c, st["done_c"]), max(emit_s, st["done_s"])
        if emit_c == st["done_c"] and emit_s == st["done_s"]:
            empty = st["c"][:, :0]
            return empty, (empty if two else None), st
        new_start = max(start, min(emit_c, emit_s) - self.layer_reach)
        mixer = layer.mixer
        ctx = None
        if isinstance(mixer, StreamingWSM):
            ctx = {"prefix": st["prefix"], "commit": new_start - start}
            mixer.stream_context = ctx
        try:
            if two:
                B = st["c"].shape[0]
                s_buf = st["s"] if st["s"] is not None else st["c"][:, :0]
                gap = st["c"].shape[1] - s_buf.shape[1]
                s_pad = F.pad(s_buf, (0, 0, 0, gap))  # unseen frames: never emitted
                y = layer(torch.cat([st["c"], s_pad]))
                c_out = y[:B, st["done_c"] - start : emit_c - start]
                s_out = y[B:, st["done_s"] - start : emit_s - start]
            else:
                y = layer(st["c"])
                c_out, s_out = y[:, st["done_c"] - start : emit_c - start], None
        finally:
            if ctx is not None:
                mixer.stream_context = None
        if ctx is not None:
            st["prefix"] = ctx["new_prefix"]
        cut = new_start - start
        st["c"] = st["c"][:, cut:]
        if two and st["s"] is not None:
            st["s"] = st["s"][:, cut:]
        st.update(start=new_start, done_c=emit_c, done_s=emit_s)
        return c_out, s_out, st
