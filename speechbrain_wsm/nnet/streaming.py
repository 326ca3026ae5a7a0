"""Streaming token mixers and encoders: MAA, SA, LLSA, chunked attention, streaming WSM.

The streaming self-supervised learning system of "A low latency attention
module for streaming self-supervised speech representation learning" (Ma et
al., arXiv 2302.13451), built on this package's mixer interface, plus a
streaming Windowed SummaryMixing the paper does not have. With ``L`` frames of
left context, ``R`` frames of right context (look-ahead) per layer and ``N``
layers:

==========================  ==========================  =================  ===============
module                      keys of query ``i``         scores             look-ahead
==========================  ==========================  =================  ===============
:class:`MaskedAttention`    ``i - L <= j <= i + R``     ``T * T``          ``N * R``
(``maa``)                   (a band mask on ``T x T``)
:class:`StreamingAttention` the same band, computed     ``T * (2W - 1)``   ``N * R``
(``sa``)                    blockwise (``W = L+R+1``)
:class:`ChunkedAttention`   own chunk and ``C`` chunks  ``T * T``          ``chunk - 1``
(``chunked``)               to the left (SpeechBrain)
:class:`StreamingWSM`       WSM window ``[i-L, i+R]``,  ``T``              ``N * R``
(``swsm``)                  running mean to ``i+R``
:class:`StreamingEncoder`   two streams per layer       ``2 T (L + W)``    ``R``
``low_latency=True``        (LLSA, see below)
==========================  ==========================  =================  ===============

Scores of SA and LLSA with the default ``block`` (``W`` queries per block):
each block scores its queries against the ``block + L + R`` keys its band
can reach, so ``T * (2W - 1)`` entries per head for SA, and
``T * (2L + 1) + T * (2W - 1)`` for LLSA's causal and look-ahead streams.

**Reconstruction, not from the paper.** The paper's method text was not
available; only its abstracts, a results table and a patent were read. SA is
built as the band attention computed without the ``T x T`` matrix (equal to
MAA, padding included), and LLSA as the two-stream form of the dual causal /
non-causal network (DCN, Moritz et al. 2021): every layer runs a *causal
stream* ``c_l(i) = layer(c_{l-1}[i-L .. i])`` and a *look-ahead stream*
``s_l(i) = layer(s_{l-1}[i-L .. i] U c_{l-1}(i .. i+R])`` with the same
weights; the encoder outputs the look-ahead stream of the last layer. By
induction ``s_N(i)`` depends on inputs up to ``i + R`` only, whatever ``N``:
the "latency equal to one layer" of the paper's abstract. The same two-stream
rule applied to Windowed SummaryMixing (window and running global mean) gives
a low-latency linear-time encoder, which no published system has.

Streaming inference (``StreamingEncoder.stream``) is incremental
(:mod:`speechbrain_wsm.nnet.streaming_cache`): per layer and stream, fixed-size
caches of keys and values (or, for SummaryMixing, summary features of the
window and a running sum and count), the frames waiting for their look-ahead
and the causal convolution's left context; each chunk computes only its new
frames. The output equals the offline forward, delayed by the look-ahead, and
neither the state nor the work of a chunk grows with the stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.transformer.TransformerASR import (
    make_transformer_src_mask,
)
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

from speechbrain_wsm.nnet.attention import SDPAttention
from speechbrain_wsm.nnet.common import valid_frames
from speechbrain_wsm.nnet.frame_sums import prefix_sums
from speechbrain_wsm.nnet.summary_mixing import WindowedSummaryMixing

__all__ = [
    "MaskedAttention",
    "StreamingAttention",
    "ChunkedAttention",
    "StreamingWSM",
    "band_mask",
    "banded_attention",
]


def _check_context(left_context, right_context, causal, name: str):
    if left_context is not None and (
        not isinstance(left_context, int) or left_context < 0
    ):
        raise ValueError(
            f"{name}: left_context must be a non-negative int, got {left_context!r}"
        )
    if not isinstance(right_context, int) or right_context < 0:
        raise ValueError(
            f"{name}: right_context must be a non-negative int, got {right_context!r}"
        )
    if causal and right_context > 0:
        raise ValueError(
            f"{name}: causal=True contradicts right_context={right_context}; "
            "use StreamingEncoder (causal convolutions, band-limited mixer)"
        )


def band_mask(T: int, left_context, right_context: int, device=None) -> torch.Tensor:
    """``[T, T]`` bool, True where query ``i`` may attend key ``j``:
    ``i - left_context <= j <= i + right_context`` (``left_context`` None: no
    limit to the left).

    Example
    -------
    >>> band_mask(4, 1, 0).int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    i = torch.arange(T, device=device)
    d = i[None, :] - i[:, None]  # j - i
    allowed = d <= right_context
    if left_context is not None:
        allowed &= d >= -left_context
    return allowed


def _with_padding(allowed: torch.Tensor, padding_mask) -> torch.Tensor:
    """``[T, T]`` allowed pairs -> ``[batch or 1, 1, T, T]``, padded keys left out.

    A query always attends to itself, so no row is empty.
    """
    allowed = allowed[None, None]
    if padding_mask is not None:
        allowed = allowed & ~padding_mask[:, None, None, :]
    return allowed | torch.eye(
        allowed.shape[-1], dtype=torch.bool, device=allowed.device
    )


class _BandAttentionBase(SDPAttention):
    """Projections of :class:`SDPAttention` (``in_proj``, ``out_proj``) with a
    band of ``left_context`` / ``right_context`` frames."""

    def __init__(
        self,
        d_model: int,
        nhead: int = 1,
        dropout: float = 0.0,
        causal: bool = False,
        left_context: int | None = 32,
        right_context: int = 0,
        two_stream: bool = False,
    ):
        super().__init__(d_model, nhead=nhead, dropout=dropout, causal=False)
        _check_context(left_context, right_context, causal, type(self).__name__)
        self.left_context, self.right_context = left_context, right_context
        self.two_stream = two_stream

    def extra_repr(self) -> str:
        return (
            f"nhead={self.nhead}, left_context={self.left_context}, "
            f"right_context={self.right_context}, two_stream={self.two_stream}"
        )


class MaskedAttention(_BandAttentionBase):
    """Masked acausal attention (MAA): full ``T x T`` attention with a band mask.

    Query ``i`` attends keys ``i - left_context ... i + right_context`` that
    are not padding (and always itself, so an all-padding row stays finite).
    Stacking ``N`` layers accumulates the look-ahead to ``N * right_context``.
    Memory grows as ``T^2``: the baseline that :class:`StreamingAttention`
    computes in ``T * (L + R + 1)``.

    Arguments
    ---------
    d_model, nhead, dropout
        As :class:`~speechbrain_wsm.nnet.attention.SDPAttention`.
    causal : bool
        Must be False unless ``right_context`` is 0 (the band sets the reach).
    left_context : int or None
        Frames to the left each query sees (None: all).
    right_context : int
        Frames to the right each query sees (the per-layer look-ahead).
    fused : bool
        False (default): scores, mask and softmax as ``T x T`` tensors, the
        way SpeechBrain's ``MultiheadAttention`` (the ``mhsa`` mixer) and the
        paper's MAA compute them. True: one
        ``scaled_dot_product_attention`` call with the band as a boolean
        mask; its fused kernels (CPU included) need not keep the ``T x T``
        weights for backward, but still do ``T^2`` work and take a ``T x T``
        mask.

    Example
    -------
    >>> att = MaskedAttention(16, nhead=2, left_context=3, right_context=1).eval()
    >>> x = torch.randn(1, 10, 16)
    >>> y = att(x)
    >>> x2 = x.clone(); x2[:, 6] += 1.0  # frame 6 reaches outputs 5 ... 9
    >>> (att(x2) - y).abs().sum(-1).gt(0).nonzero()[:, 1].tolist()
    [5, 6, 7, 8, 9]
    """

    def __init__(self, *args, fused: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if self.two_stream:
            raise ValueError("MaskedAttention has no two_stream mode; use 'sa'")
        self.fused = fused

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        valid_frames(x, src_key_padding_mask)
        T = x.shape[1]
        q, k, v = self.split_heads(x)
        band = band_mask(T, self.left_context, self.right_context, x.device)
        allowed = _with_padding(band, src_key_padding_mask)
        p = self.dropout if self.training else 0.0
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
            y = torch.matmul(F.dropout(weights, p) if p > 0 else weights, v)
        return self.merge_heads(y)


def banded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    left: int,
    right: int,
    key_valid: torch.Tensor | None = None,
    k_future: torch.Tensor | None = None,
    v_future: torch.Tensor | None = None,
    block: int | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Attention of query ``i`` over keys ``i - left ... i + right``, blockwise.

    Queries are cut into blocks of ``block`` frames; block ``b`` scores its
    queries against the ``block + left + right`` keys its band can reach (an
    unfolded, zero-padded copy of ``k``), masks what lies outside each query's
    band, outside the sequence or on padding, and takes the softmax there. The
    score tensor holds ``T * (block + left + right)`` entries per head instead
    of ``T * T``: memory linear in ``T``.

    Arguments
    ---------
    q, k, v : torch.Tensor
        ``[batch, head, frame, head_dim]``.
    left, right : int
        Band of each query.
    key_valid : torch.Tensor, optional
        ``[batch, frame]`` bool, True = a real frame.
    k_future, v_future : torch.Tensor, optional
        ``[batch, head, frame, head_dim]``: keys/values for the offsets
        ``1 ... right`` (``k``/``v`` give the offsets ``-left ... 0``). The
        look-ahead stream of LLSA reads its future from the causal stream.
    block : int, optional
        Queries per block (default ``left + right + 1``).
    dropout : float
        Dropout on the attention weights.

    Returns
    -------
    torch.Tensor
        ``[batch, head, frame, head_dim]``. A query always attends to itself,
        so no row is empty.

    Example
    -------
    >>> q, k, v = torch.randn(3, 1, 2, 9, 4).unbind(0)
    >>> dense = F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(9, 2, 1))
    >>> torch.allclose(banded_attention(q, k, v, 2, 1), dense, atol=1e-6)
    True
    """
    B, H, T, dh = q.shape
    C = block or (left + right + 1)
    nb = -(-T // C)
    extra = nb * C - T
    S = C + left + right

    def windows(t):  # [B, H, T, dh] -> [B, H, nb, S, dh]
        t = F.pad(t, (0, 0, left, right + extra))
        return t.unfold(2, S, C).transpose(-1, -2)

    qb = F.pad(q, (0, 0, 0, extra)).view(B, H, nb, C, dh) * dh**-0.5
    a = torch.arange(C, device=q.device)[:, None]
    s = torch.arange(S, device=q.device)[None, :]
    offset = s - left - a  # j - i, [C, S]
    inside = (offset >= -left) & (offset <= right)
    valid = torch.ones(B, T, dtype=torch.bool, device=q.device)
    if key_valid is not None:
        valid = key_valid
    valid = F.pad(valid, (left, right + extra), value=False).unfold(1, S, C)
    allowed = inside[None, None] & valid[:, :, None, :]  # [B, nb, C, S]
    allowed = (allowed | (offset == 0)[None, None])[:, None]  # [B, 1, nb, C, S]
    scores = torch.matmul(qb, windows(k).transpose(-1, -2))
    future = None
    if k_future is not None:
        future = (offset > 0)[None, None, None]
        scores = torch.where(
            future, torch.matmul(qb, windows(k_future).transpose(-1, -2)), scores
        )
    scores = scores.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    if dropout > 0:
        p = F.dropout(p, dropout)
    if future is None:
        y = torch.matmul(p, windows(v))
    else:
        zero = p.new_zeros(())
        y = torch.matmul(torch.where(future, zero, p), windows(v)) + torch.matmul(
            torch.where(future, p, zero), windows(v_future)
        )
    return y.reshape(B, H, nb * C, dh)[:, :, :T]


class StreamingAttention(_BandAttentionBase):
    """Streaming attention (SA): the band of :class:`MaskedAttention` without
    the ``T x T`` matrix.

    Numerically equal to MAA with the same parameters (padding and utterance
    edges included), with training memory ``T * (block + L + R)`` per head
    (:func:`banded_attention`). In ``two_stream`` mode (the LLSA encoder, a
    reconstruction, not from the paper) the input is ``[causal; look-ahead]``
    stacked on the batch axis: the causal half attends ``[i - L, i]`` of
    itself, the look-ahead half ``[i - L, i]`` of itself and ``(i, i + R]`` of
    the causal half.

    Arguments
    ---------
    d_model, nhead, dropout, causal, left_context, right_context
        As :class:`MaskedAttention`; ``left_context`` must be an int.
    two_stream : bool
        The LLSA mode above (set by ``StreamingEncoder``).
    block : int, optional
        Queries per block (default ``L + R + 1``).

    Example
    -------
    >>> sa = StreamingAttention(16, nhead=2, left_context=4, right_context=1).eval()
    >>> maa = MaskedAttention(16, nhead=2, left_context=4, right_context=1).eval()
    >>> _ = maa.load_state_dict(sa.state_dict())
    >>> x = torch.randn(2, 11, 16)
    >>> pad = torch.arange(11) >= torch.tensor([[11], [7]])
    >>> torch.allclose(sa(x, pad), maa(x, pad), atol=1e-5)
    True
    """

    def __init__(self, *args, block: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.left_context is None:
            raise ValueError(
                "StreamingAttention needs a finite left_context (int), got None"
            )
        self.block = block

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        valid = valid_frames(x, src_key_padding_mask)
        q, k, v = self.split_heads(x)
        L, R = self.left_context, self.right_context
        p = self.dropout if self.training else 0.0
        if not self.two_stream:
            y = banded_attention(q, k, v, L, R, valid, block=self.block, dropout=p)
            return self.merge_heads(y)
        if x.shape[0] % 2:
            raise ValueError(
                f"two_stream input must stack [causal; look-ahead] on the batch "
                f"axis (even batch), got {tuple(x.shape)}"
            )
        B = x.shape[0] // 2
        vc = None if valid is None else valid[:B]
        causal = banded_attention(
            q[:B], k[:B], v[:B], L, 0, vc, block=self.block, dropout=p
        )
        ahead = banded_attention(
            q[B:], k[B:], v[B:], L, R, vc, k[:B], v[:B], block=self.block, dropout=p
        )
        return self.merge_heads(torch.cat([causal, ahead], dim=0))


class ChunkedAttention(SDPAttention):
    """Chunked attention, SpeechBrain's dynamic chunk training mask (baseline).

    Frames are cut into chunks of ``chunk_size``; a frame attends to its own
    chunk and ``left_chunks`` chunks before it (None: all the past), through
    :func:`speechbrain.lobes.models.transformer.TransformerASR.make_transformer_src_mask`.
    The look-ahead is at most ``chunk_size - 1`` frames whatever the depth.

    Arguments
    ---------
    d_model, nhead, dropout
        As :class:`SDPAttention`.
    causal : bool
        Also mask the future inside the chunk (no look-ahead at all).
    chunk_size : int
        Frames per chunk.
    left_chunks : int or None
        Chunks of left context.

    Example
    -------
    >>> att = ChunkedAttention(16, nhead=2, chunk_size=4).eval()
    >>> x = torch.randn(1, 12, 16)
    >>> torch.allclose(att(x)[:, :8], att(x[:, :8]), atol=1e-6)
    True
    """

    def __init__(
        self,
        *args,
        causal: bool = False,
        chunk_size: int = 16,
        left_chunks: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, causal=False, **kwargs)
        self.chunk_causal = causal
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.config = DynChunkTrainConfig(chunk_size, left_chunks)
        self.left_context = None
        self.right_context = 0 if causal else chunk_size - 1

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        valid_frames(x, src_key_padding_mask)
        q, k, v = self.split_heads(x)
        chunks = ~make_transformer_src_mask(x, dynchunktrain_config=self.config)
        if self.chunk_causal:
            chunks = chunks.tril()
        allowed = _with_padding(chunks, src_key_padding_mask)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0
        )
        return self.merge_heads(y)

    def extra_repr(self) -> str:
        c = self.config
        return f"nhead={self.nhead}, chunk_size={c.chunk_size}, left_chunks={c.left_context_size}"


def _range_sums(u: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Sums of ``u`` ``[B, T, ...]`` over frames ``[t + lo, t + hi]`` clipped to
    the sequence (empty ranges sum to 0), from one prefix sum."""
    T = u.shape[1]
    prefix = prefix_sums(u)
    t = torch.arange(T, device=u.device)
    end = (t + hi + 1).clamp(0, T)
    start = torch.minimum((t + lo).clamp(0, T), end)
    return prefix[:, end] - prefix[:, start]


class StreamingWSM(WindowedSummaryMixing):
    """Windowed SummaryMixing with a look-ahead: window ``[t - L, t + R]`` and a
    running global mean over frames ``<= t + R``.

    Output ``t`` depends on frames ``<= t + R`` only, so ``N`` layers see
    ``N * R`` frames ahead; with ``StreamingEncoder`` ``low_latency=True``
    (``two_stream``) the look-ahead half reads its future window and its
    future part of the running mean from the causal half, and the encoder's
    look-ahead stays ``R`` (reconstruction, not from any paper). State for
    streaming: the running sum and count, constant in the stream length.

    Arguments
    ---------
    d_model, nhead
        As :class:`WindowedSummaryMixing`.
    left_context : int
        Frames before ``t`` in the local window.
    right_context : int
        Frames after ``t`` in the window and the running mean (look-ahead).
    causal : bool
        Must be False unless ``right_context`` is 0.
    two_stream : bool
        The LLSA mode (set by ``StreamingEncoder``).
    **kwargs
        ``mode``, ``activation``, ``dropout`` ... of :class:`SummaryMixing`.

    Example
    -------
    >>> wsm = StreamingWSM(16, nhead=2, left_context=3, right_context=2).eval()
    >>> x = torch.randn(1, 12, 16)
    >>> x2 = x.clone(); x2[:, 8] += 1.0  # reaches outputs >= 6 only
    >>> (wsm(x2) - wsm(x)).abs().sum(-1).gt(0).nonzero()[0, 1].item()
    6
    """

    def __init__(
        self,
        d_model: int,
        nhead: int = 1,
        left_context: int = 31,
        right_context: int = 0,
        causal: bool = False,
        two_stream: bool = False,
        **kwargs,
    ):
        _check_context(left_context, right_context, causal, "StreamingWSM")
        if left_context is None:
            raise ValueError("StreamingWSM needs an int left_context, got None")
        super().__init__(
            d_model,
            nhead,
            window_size=left_context + right_context + 1,
            causal=False,
            **kwargs,
        )
        self.left, self.right = left_context, right_context
        self.left_context, self.right_context = left_context, right_context
        self.two_stream = two_stream
        #: Set by ``StreamingEncoder.stream``: ``{"prefix": (sum, count) or
        #: None, "commit": k}``; the mixer adds the prefix to its running sums
        #: and leaves ``"new_prefix"``: the prefix plus the first ``k`` frames.
        self.stream_context = None

    def _summaries(self, u, n):
        B2, T = u.shape[:2]
        if n is None:
            n = u.new_ones(B2, T)
        ctx = self.stream_context
        prefix = None if ctx is None else ctx.get("prefix")
        if ctx is not None:
            k = ctx["commit"]
            add_u, add_n = u[:, :k].sum(1), n[:, :k].sum(1)
            if prefix is not None:
                add_u, add_n = prefix[0] + add_u, prefix[1] + add_n
            ctx["new_prefix"] = (add_u.detach(), add_n.detach())
        L, R = self.left, self.right
        if not self.two_stream:
            return self._window_and_running(u, n, L, R, prefix)
        if B2 % 2:
            raise ValueError(
                f"two_stream input must stack [causal; look-ahead] on the batch "
                f"axis (even batch), got batch {B2}"
            )
        B = B2 // 2
        uc, us, nc = u[:B], u[B:], n[:B]
        pc = None if prefix is None else (prefix[0][:B], prefix[1][:B])
        ps = None if prefix is None else (prefix[0][B:], prefix[1][B:])
        win_c, glob_c = self._window_and_running(uc, nc, L, 0, pc)
        # look-ahead stream: own past [t-L, t], the causal stream's (t, t+R]
        fut_u, fut_n = _range_sums(uc, 1, R), _range_sums(nc, 1, R)
        win_u = _range_sums(us, -L, 0) + fut_u
        win_n = _range_sums(nc, -L, 0) + fut_n
        run_u = _range_sums(us, -T, 0) + fut_u
        run_n = _range_sums(nc, -T, 0) + fut_n
        if ps is not None:
            run_u, run_n = run_u + ps[0][:, None], run_n + ps[1][:, None]
        win_s = win_u / win_n.clamp(min=1.0).unsqueeze(-1)
        glob_s = run_u / run_n.clamp(min=1.0).unsqueeze(-1)
        return [torch.cat([win_c, win_s]), torch.cat([glob_c, glob_s])]

    @staticmethod
    def _window_and_running(u, n, L, R, prefix):
        T = u.shape[1]
        win = _range_sums(u, -L, R) / _range_sums(n, -L, R).clamp(min=1.0)[..., None]
        run_u, run_n = _range_sums(u, -T, R), _range_sums(n, -T, R)
        if prefix is not None:
            run_u, run_n = run_u + prefix[0][:, None], run_n + prefix[1][:, None]
        return [win, run_u / run_n.clamp(min=1.0).unsqueeze(-1)]

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        valid = valid_frames(x, src_key_padding_mask)
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"expected feature size {self.d_model}, got {tuple(x.shape)}"
            )
        if self.two_stream and valid is not None:
            half = x.shape[0] // 2
            if not torch.equal(valid[:half], valid[half:]):
                raise ValueError("two_stream halves must share one padding mask")
        local, summ = self._branches(x)
        u, n = summ.float(), None  # float32 sums, padding removed (not scaled)
        if valid is not None:
            u, n = u.masked_fill(~valid.unsqueeze(-1), 0.0), valid.float()
        return self._combine(local, self._summaries(u, n), x.dtype, x.shape[1])

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, nhead={self.nhead}, left_context={self.left}, "
            f"right_context={self.right}, two_stream={self.two_stream}"
        )
