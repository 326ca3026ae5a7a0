"""Incremental streaming of a :class:`~speechbrain_wsm.nnet.streaming_encoder.StreamingEncoder`.

Each call of :func:`encoder_step` takes the next ``n`` input frames and
computes only ``n`` new frames in every layer, from fixed-size caches:

==================  ============================================================
cache               what it holds (per layer and per stream)
==================  ============================================================
``h``               the residual stream of the ``P`` frames waiting for their
                    look-ahead (``P = R`` where the layer adds look-ahead, else 0)
``q``, ``k``, ``v`` attention (``maa``, ``sa``): queries of the waiting frames,
                    keys and values of the last ``L + P`` frames;
                    ``chunked``: keys and values of the ``L`` frames of the
                    left chunks (``q`` empty: no frame waits)
``local``, ``u``,   streaming WSM (``swsm``): local features of the waiting
``acc``, ``acc_n``  frames, summary features of the last ``L + P`` frames, and
                    the running sum and count of every older frame
``conv``            the last ``kernel_size - 1`` inputs of the causal depthwise
                    convolution (Conformer module, Branchformer cgMLP)
==================  ============================================================

plus ``pos``, the number of frames fed so far. Every tensor has a size fixed
by the model (``L``, ``R``, ``kernel_size``, ``d_model``), not by the chunk or
by how much audio came before, and the work of a step is proportional to
``n``: projections, feed-forwards and convolutions of ``n`` frames, and
attention of ``n`` queries over windows of ``L + R + 1`` keys (``chunked``:
one chunk a step, its queries over the ``L`` cached keys and its own).

Positions: layer ``l`` of a stream delays its input by ``d_in`` frames and
its output by ``d_out`` (the look-ahead accumulated so far), so the ``n``
frames a step returns are the encoder outputs at positions ``pos - lookahead
... pos - lookahead + n - 1``. Positions below 0 (the start of a stream) and
from ``end`` on (after the last real frame, while flushing) are masked out of
every attention window, window sum and convolution, exactly as the offline
forward sees no frame there; the outputs at those positions are finite and
meaningless, and :meth:`StreamingEncoder.stream` drops them.

The two-stream LLSA form (``low_latency=True``) keeps both streams: the
causal stream ``c`` (no delay) and the look-ahead stream ``s`` (delay ``R``
from layer 1 on), whose attention reads its future keys and window sums from
``c``'s caches of the same layer, and (look-ahead convolutions,
``conv_lookahead``) whose depthwise convolution reads its future inputs from
``c``'s convolution of the same layer.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from speechbrain_wsm.nnet.frame_sums import prefix_sums
from speechbrain_wsm.nnet.streaming import (
    ChunkedAttention,
    StreamingWSM,
    _BandAttentionBase,
)

__all__ = [
    "init_state",
    "encoder_step",
    "compiled_step",
    "state_tensors",
    "StreamSpec",
    "StepPlan",
    "step_plan",
]


@dataclass(frozen=True)
class StreamSpec:
    """Delays and cache sizes of one stream of one layer.

    ``d_in``/``d_out``: delay of the layer's input and output (frames);
    ``pending = d_out - d_in``: frames waiting for their look-ahead;
    ``right``: the mixer's own look-ahead (keys from the same stream);
    ``future``: look-ahead read from the causal stream (LLSA's ``s``);
    ``keep``: frames of keys / summary features kept (at least
    ``left + pending``).
    """

    d_in: int
    d_out: int
    left: int
    right: int
    future: int
    keep: int

    @property
    def pending(self) -> int:
        return self.d_out - self.d_in


def stream_specs(enc) -> list[dict]:
    """One ``{stream name: StreamSpec}`` per layer of ``enc``."""
    L, R = enc.left_context, enc.right_context
    specs = []
    for i in range(len(enc.layers)):
        if enc.low_latency:
            d = 0 if i == 0 else R
            specs.append(
                {
                    "c": StreamSpec(0, 0, L, 0, 0, max(L, R)),
                    "s": StreamSpec(d, R, L, 0, R, L + R - d),
                }
            )
        else:
            specs.append({"c": StreamSpec(i * R, (i + 1) * R, L, R, 0, L + R)})
    return specs


def _kind(mixer) -> str:
    if isinstance(mixer, StreamingWSM):
        return "swsm"
    if isinstance(mixer, _BandAttentionBase):
        return "attention"
    if isinstance(mixer, ChunkedAttention):
        return "chunked"
    raise ValueError(
        f"incremental streaming supports maa, sa, swsm and chunked mixers, got "
        f"{type(mixer).__name__}"
    )


def _conv_channels(layer):
    conv = getattr(layer, "conv", None)
    if conv is not None and hasattr(conv, "bottleneck"):  # Conformer
        return conv.conv
    cgmlp = getattr(layer, "cgmlp", None)
    if cgmlp is not None:  # Branchformer
        return cgmlp.conv
    return None  # Transformer


def init_state(enc, batch: int, device=None, dtype=torch.float32) -> dict:
    """The empty stream state of ``enc`` for ``batch`` streams."""
    D = enc.d_model
    layers = []
    for layer, specs in zip(enc.layers, stream_specs(enc), strict=True):
        mixer, per_layer = layer.mixer, {}
        for name, sp in specs.items():
            st = {"h": torch.zeros(batch, sp.pending, D, device=device, dtype=dtype)}
            if _kind(mixer) in ("attention", "chunked"):
                H = mixer.nhead
                dh = D // H
                st["q"] = torch.zeros(
                    batch, sp.pending, H, dh, device=device, dtype=dtype
                )
                st["k"] = torch.zeros(batch, sp.keep, H, dh, device=device, dtype=dtype)
                st["v"] = torch.zeros_like(st["k"])
            else:
                S = mixer.summary_out
                if mixer.mode != "lite":
                    dl = mixer.in_dims[0]
                    st["local"] = torch.zeros(
                        batch, sp.pending, dl, device=device, dtype=dtype
                    )
                st["u"] = torch.zeros(batch, sp.keep, S, device=device)
                st["acc"] = torch.zeros(batch, S, device=device)
                st["acc_n"] = torch.zeros(batch, device=device)
            conv = _conv_channels(layer)
            if conv is not None:
                k = _conv_taps(conv)
                st["conv"] = torch.zeros(
                    batch, k - 1, conv.in_channels, device=device, dtype=dtype
                )
            per_layer[name] = st
        layers.append(per_layer)
    return {"pos": 0, "layers": layers}


def state_tensors(state: dict) -> list[torch.Tensor]:
    """Every cache tensor of ``state`` in a fixed order (``pos`` excluded)."""
    out = []
    for per_layer in state["layers"]:
        for name in sorted(per_layer):
            st = per_layer[name]
            out.extend(st[k] for k in sorted(st))
    return out


def _positions(start, n: int, device):
    return torch.arange(n, device=device) + start


def _valid(pos: torch.Tensor, end) -> torch.Tensor:
    ok = pos >= 0
    if end is not None:
        ok = ok & (pos < end)
    return ok


@functools.lru_cache(maxsize=1024)
def _band_cached(n: int, lo: int, hi: int, t0: int, t1: int, device) -> torch.Tensor:
    r = torch.arange(n, device=device)[:, None] + torch.arange(
        lo, hi + 1, device=device
    )
    return (r >= t0) & (r < t1)


def _band(q0, end, n: int, lo: int, hi: int, device):
    """``[n, hi - lo + 1]`` bool: whether position ``q0 + i + o`` is a frame of
    the stream (``>= 0`` and before ``end``), for ``i < n`` and offsets
    ``lo <= o <= hi``; None when every one is.

    With Python ints (streaming) the mask is cached, keyed on where the
    stream's edges fall in the band, so a step builds no mask once the
    stream is past its start; with tensors (``pos`` and ``end`` of the
    exported chunk step) it is computed.
    """
    if isinstance(q0, int) and (end is None or isinstance(end, int)):
        top = n + hi  # one past the largest i + o
        t0 = min(max(-q0, lo), top)
        t1 = top if end is None else min(max(end - q0, lo), top)
        if t0 == lo and t1 == top:
            return None
        return _band_cached(n, lo, hi, t0, t1, device)
    offsets = torch.arange(lo, hi + 1, device=device)
    return _valid(_positions(q0, n, device)[:, None] + offsets[None, :], end)


def _frames_valid(q0, end, n: int, device):
    """``[n]`` bool validity of positions ``q0 ... q0 + n - 1``; None: all valid."""
    band = _band(q0, end, n, 0, 0, device)
    return None if band is None else band[:, 0]


def _append(cache: torch.Tensor, new: torch.Tensor, dim: int) -> torch.Tensor:
    """``cat([cache, new])``, without the copy when the cache is empty."""
    return torch.cat([cache, new], dim=dim) if cache.shape[dim] else new


def _tail(t: torch.Tensor, keep: int, dim: int) -> torch.Tensor:
    return t.narrow(dim, t.shape[dim] - keep, keep)


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` over ``[B, batch, ...]``; one ``bmm`` (no copy of a strided
    ``b``) when ``B == 1``."""
    if a.shape[0] == 1:
        return torch.bmm(a[0], b[0]).unsqueeze(0)
    return torch.matmul(a, b)


def _window_view(t: torch.Tensor, start: int, n: int, width: int) -> torch.Tensor:
    """``[B, F, H, dh]`` -> ``[B, n * H, width, dh]`` view (no copy): for query
    ``j`` and head ``h``, frames ``start + j ... start + j + width - 1``.

    Frames are the outer axis of the caches, so one query's window of one head
    is a matrix of row stride ``H * dh`` and consecutive (query, head) pairs
    are ``dh`` apart: a batch of matrices a single ``bmm`` reads in place.
    """
    t = t.contiguous()
    B, Fr, H, dh = t.shape
    return t.as_strided(
        (B, n * H, width, dh),
        (Fr * H * dh, dh, H * dh, 1),
        t.storage_offset() + start * H * dh,
    )


def _scores(q, k, start: int, width: int, strided: bool) -> torch.Tensor:
    """``q`` ``[B, n, H, dh]`` against its windows of ``k`` -> ``[B, n, H, width]``."""
    B, n, H, dh = q.shape
    if strided:
        kw = _window_view(k, start, n, width).transpose(-1, -2)
        return _bmm(q.reshape(B, n * H, 1, dh), kw).view(B, n, H, width)
    kw = k.narrow(1, start, n + width - 1).unfold(1, width, 1)  # [B, n, H, dh, w]
    return torch.matmul(q.unsqueeze(-2), kw).squeeze(-2)


def _weighted(p, v, start: int, width: int, strided: bool) -> torch.Tensor:
    """``p`` ``[B, n, H, width]`` weights of the windows of ``v`` -> ``[B, n, H, dh]``."""
    B, n, H, _ = p.shape
    dh = v.shape[-1]
    if strided:
        vw = _window_view(v, start, n, width)
        return _bmm(p.reshape(B, n * H, 1, width), vw).view(B, n, H, dh)
    vw = v.narrow(1, start, n + width - 1).unfold(1, width, 1)  # [B, n, H, dh, w]
    return torch.matmul(vw, p.unsqueeze(-1)).squeeze(-1)


def _attention_step(plan, mixer, proj, st, sp, a, end, future, need_out=True):
    """Attention of the ``n`` frames leaving the queue; new caches; this
    stream's keys and values (for the look-ahead stream's future).

    Each query attends to its own ``L + R + 1`` keys (plus LLSA's ``R`` future
    keys of the causal stream): the work is proportional to ``n``.
    """
    q_new, k_new, v_new = proj  # [B, n, H, dh]
    n, device = q_new.shape[1], q_new.device
    kf = _append(st["k"], k_new, 1)  # positions a - d_in - keep ...
    vf = _append(st["v"], v_new, 1)
    qf = _append(st["q"], q_new, 1)
    new = {"q": qf[:, n:], "k": _tail(kf, sp.keep, 1), "v": _tail(vf, sp.keep, 1)}
    if not need_out:
        return None, new, (kf, vf, sp.keep)
    L, Rs, P = sp.left, sp.right, sp.pending
    q0 = a - sp.d_out
    strided = isinstance(q0, int) and not torch.compiler.is_compiling()
    parts = [(kf, vf, sp.keep - P - L, L + Rs + 1)]
    allowed = _band(q0, end, n, -L, Rs, device)
    if allowed is not None:
        allowed = allowed.clone()
        allowed[:, L] = True  # a frame always sees itself
    if sp.future:
        ck, cv, ckeep = future
        parts.append((ck, cv, ckeep - sp.future + 1, sp.future))
        fut = _band(q0, end, n, 1, sp.future, device)
        if allowed is not None or fut is not None:
            own = allowed if allowed is not None else torch.ones_like(fut[:, :1])
            own = own.expand(n, L + Rs + 1)
            if fut is None:
                fut = torch.ones(n, sp.future, dtype=torch.bool, device=device)
            allowed = torch.cat([own, fut], dim=1)
    q = qf[:, :n] * q_new.shape[-1] ** -0.5
    scores = [_scores(q, k, start, w, strided) for k, _, start, w in parts]
    s = torch.cat(scores, dim=-1) if len(scores) > 1 else scores[0]
    if allowed is not None:
        s = s.masked_fill(~allowed[None, :, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    y, at = None, 0
    for _, v, start, w in parts:
        pw = p.narrow(-1, at, w) if len(parts) > 1 else p
        term = _weighted(pw, v, start, w, strided)
        y = term if y is None else y + term
        at += w
    B, _, H, dh = y.shape
    y = plan.linear(mixer.out_proj, y.reshape(B, n, H * dh))
    return y, new, (kf, vf, sp.keep)


@functools.lru_cache(maxsize=256)
def _chunk_allowed(n: int, keep: int, missing: int, causal: bool, device):
    """``[n, keep + n]`` bool: the cached keys but the first ``missing``
    (positions before the stream), and the chunk's own keys (``causal``: up
    to the query)."""
    own = torch.ones(n, n, dtype=torch.bool, device=device)
    if causal:
        own = own.tril()
    cached = torch.arange(keep, device=device) >= missing
    return torch.cat([cached.expand(n, keep), own], dim=1)


def _chunked_step(plan, mixer, proj, st, sp, a, end, future, need_out=True):
    """Chunked attention of one chunk's ``n`` frames (``a`` its first
    position, a multiple of the chunk size; ``n`` below the chunk size only
    for the last chunk of a stream): each query attends to the ``L`` cached
    keys of the left chunks and to its own chunk, as the offline
    ``make_transformer_src_mask`` allows; the cached keys before the stream's
    start are masked out."""
    q_new, k_new, v_new = proj  # [B, n, H, dh]
    B, n, H, dh = q_new.shape
    K = sp.keep
    kf = _append(st["k"], k_new, 1)  # positions a - K ... a + n - 1
    vf = _append(st["v"], v_new, 1)
    new = {"q": st["q"], "k": _tail(kf, K, 1), "v": _tail(vf, K, 1)}
    causal = mixer.chunk_causal
    allowed = None
    if not isinstance(a, int):  # the compiled step: positions as tensors
        cached = torch.arange(K, device=q_new.device) + (a - K) >= 0
        own = torch.ones(n, n, dtype=torch.bool, device=q_new.device)
        own = own.tril() if causal else own
        allowed = torch.cat([cached.expand(n, K), own], dim=1)
    elif a < K or (causal and n > 1):
        allowed = _chunk_allowed(n, K, max(0, K - a), causal, q_new.device)
    q = q_new.transpose(1, 2) * dh**-0.5  # [B, H, n, dh]
    s = torch.matmul(q, kf.permute(0, 2, 3, 1))  # [B, H, n, K + n]
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    y = torch.matmul(torch.softmax(s, dim=-1), vf.transpose(1, 2))
    y = plan.linear(mixer.out_proj, y.transpose(1, 2).reshape(B, n, H * dh))
    return y, new, None


def _range(cum: torch.Tensor, lo: int, hi: int, n: int) -> torch.Tensor:
    """Sums over cache frames ``[lo + j, hi + j]`` for ``j < n`` from the
    zero-led prefix sum ``cum``."""
    return cum[:, hi + 1 : hi + 1 + n] - cum[:, lo : lo + n]


def _swsm_step(plan, mixer, proj, st, sp, a, end, future, need_out=True):
    """Streaming WSM of the ``n`` frames leaving the queue: its combiner's
    inputs (local features, window and running means); new caches; this
    stream's summary features and validity (for the look-ahead stream).

    Once every cached frame is a frame of the stream (past its start, before
    its end) the frame counts are known numbers: only the summary features'
    prefix sum is computed (``cn`` is then None).
    """
    local, summ = proj
    n, device, dtype = summ.shape[1], summ.device, summ.dtype
    B = summ.shape[0]
    L, Rs, P, K = sp.left, sp.right, sp.pending, sp.keep
    start = a - sp.d_in - K  # position of cache frame 0
    ok = _frames_valid(start, end, K + n, device)
    if ok is None:
        u_new, cn = summ.float(), None
    else:
        nf = ok.to(torch.float32)[None].expand(B, -1)
        u_new, cn = summ.float() * nf[:, K:, None], prefix_sums(nf)
    uf = torch.cat([st["u"], u_new], dim=1)
    cu = prefix_sums(uf)
    new = {
        "u": uf[:, n:],
        "acc": st["acc"] + uf[:, :n].sum(1),
        "acc_n": st["acc_n"] + (n if cn is None else cn[:, n]),
    }
    le = None
    if local is not None:
        lf = _append(st["local"], local, 1)
        le, new["local"] = lf[:, :n], lf[:, n:]
    if not need_out:
        return None, new, (cu, cn, K)
    q0 = K - P  # cache index of the first query
    win_u = _range(cu, q0 - L, q0 + Rs, n)
    run_u = st["acc"][:, None] + cu[:, q0 + Rs + 1 : q0 + Rs + 1 + n]
    if cn is None:
        win_n = L + Rs + 1
        run_n = st["acc_n"][:, None] + torch.arange(
            q0 + Rs + 1, q0 + Rs + 1 + n, device=device, dtype=torch.float32
        )
    else:
        win_n = _range(cn, q0 - L, q0 + Rs, n)
        run_n = st["acc_n"][:, None] + cn[:, q0 + Rs + 1 : q0 + Rs + 1 + n]
    if sp.future:
        fcu, fcn, fkeep = future
        # causal-stream frames (t, t + R]: cache index fkeep - R + 1 + j ...
        lo = fkeep - sp.future + 1
        fu = _range(fcu, lo, lo + sp.future - 1, n)
        fn = sp.future if fcn is None else _range(fcn, lo, lo + sp.future - 1, n)
        win_u, win_n, run_u, run_n = win_u + fu, win_n + fn, run_u + fu, run_n + fn
    if isinstance(win_n, int):  # a count of frames, at least 1
        win = win_u / float(win_n)
    else:
        win = win_u / win_n.clamp(min=1.0).unsqueeze(-1)
    run = run_u / run_n.clamp(min=1.0).unsqueeze(-1)
    # the combiner's inputs: :func:`_layer_step` combines all streams at once
    return (le, win.to(dtype), run.to(dtype)), new, (cu, cn, K)


def _conv_taps(conv: torch.nn.Conv1d) -> int:
    """Taps of ``conv`` over the stream's own past and present (``K``): all
    of them, less the look-ahead taps of a :class:`~speechbrain_wsm.nnet.
    streaming_encoder.TwoStreamConvolutionModule`."""
    return conv.kernel_size[0] - getattr(conv, "ahead", 0)


def _conv_step(conv: torch.nn.Conv1d, b, cache, invalid):
    """Causal depthwise convolution of ``b`` ``[B, n, C]`` (channels last)
    after ``cache`` ``[B, K - 1, C]``; frames outside the stream (``invalid``
    ``[B, n, 1]`` True, or None: none) are zeros, its padding.

    With ``conv.ahead`` look-ahead taps (LLSA's two-stream convolution) the
    batch is the causal stream (positions ``a ...``), then the look-ahead
    stream (positions ``a - ahead ...``): the latter's last taps read the
    causal stream's frames ``t + 1 ... t + ahead``, the newest of which
    arrive in this step."""
    if invalid is not None:
        b = b.masked_fill(invalid, 0.0)
    full = _append(cache, b, 1)
    ahead, n = getattr(conv, "ahead", 0), b.shape[1]
    K = conv.kernel_size[0] - ahead  # = _conv_taps(conv)
    w = conv.weight[:, 0].t()  # [taps, C]
    # windows [B, n, K, C] times the kernels [K, C] (channels innermost in
    # both): for the few frames of a chunk, two element-wise operators cost
    # less than the convolution kernel
    windows = full.unfold(1, K, 1).transpose(-1, -2)
    out = (windows * w[:K]).sum(-2)
    if ahead:
        half = full.shape[0] // 2
        # look-ahead output j (position a - ahead + j) reads causal positions
        # a - ahead + j + 1 ... a + j: cache indices K - ahead + j ...
        fut = full[:half].narrow(1, K - ahead, n + ahead - 1).unfold(1, ahead, 1)
        out = torch.cat(
            [out[:half], out[half:] + (fut.transpose(-1, -2) * w[K:]).sum(-2)]
        )
    if conv.bias is not None:
        out = out + conv.bias
    return out, _tail(full, cache.shape[1], 1)


def _split(t: torch.Tensor, parts: int, dim: int = 0):
    return t.chunk(parts, dim=dim) if parts > 1 else (t,)


def _cat(ts, dim: int = 0) -> torch.Tensor:
    return torch.cat(ts, dim=dim) if len(ts) > 1 else ts[0]


def _ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _act(module, x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) if isinstance(module, torch.nn.SiLU) else module(x)


def _ffn(plan, seq, x: torch.Tensor) -> torch.Tensor:
    """The encoders' feed-forward block (LayerNorm, Linear, activation,
    Linear; dropouts are identities in eval mode) as four calls."""
    ffn = seq[1].ffn
    h = _act(ffn[1], plan.linear(ffn[0], _ln(x, seq[0])))
    return plan.linear(ffn[3], h)


def _conformer_conv(plan, cm, he, cache, invalid, skip: int = 0):
    """SpeechBrain's Conformer convolution module on ``[B, n, D]`` frames,
    channels last throughout (the pointwise convolution as a linear layer);
    the first ``skip`` rows only fill the convolution's cache (no output)."""
    b = F.glu(plan.linear(cm.bottleneck[0], _ln(he, cm.layer_norm)), dim=-1)
    c, conv = _conv_step(cm.conv, b, cache, invalid)
    c = c[skip:]
    ac = cm.after_conv  # LayerNorm, activation, Linear, Dropout
    return plan.linear(ac[2], _act(ac[1], _ln(c, ac[0]))), conv


def _layer_step(plan, index, layer, xs, sts, sps, a, end):
    """The streams of one layer (LLSA: causal then look-ahead), stacked on
    the batch axis for every per-frame part: ``xs[i]`` ``[B, n, D]`` at
    positions ``a - d_in ...`` -> outputs at positions ``a - d_out ...``.

    LLSA's two streams share their input in layer 1 (computed once), and
    the causal stream of the last layer only feeds its keys (or summary
    features) and, with look-ahead convolutions, its convolution inputs to
    the look-ahead stream: nothing after them is computed.
    """
    S, n = len(xs), xs[0].shape[1]
    B = xs[0].shape[0]
    shared = S > 1 and xs[0] is xs[1]
    x = xs[0] if shared else _cat(xs)
    arch = plan.arch
    h = torch.add(x, _ffn(plan, layer.ffn1, x), alpha=0.5) if arch == "c" else x
    z = _ln(h, layer.norm_mixer)
    mixer = layer.mixer
    if plan.kind != "swsm":
        H = mixer.nhead
        qkv = plan.linear(mixer.in_proj, z).view(z.shape[0], n, 3, H, -1)
        q, k, v = qkv.unbind(2)
        parts = [q, k, v]
        step = _attention_step if plan.kind == "attention" else _chunked_step
    else:
        local, summ = plan.branches(mixer, z)
        parts = [local, summ]
        step = _swsm_step
    if shared:
        projs = [parts] * S
        hs = (h,) * S
    else:
        projs = zip(
            *(_split(t, S) if t is not None else (None,) * S for t in parts),
            strict=True,
        )
        hs = _split(h, S)
    # LLSA's causal stream in the last layer feeds the look-ahead stream
    # only: its mixer's output is needed for its convolution inputs alone
    feeds = S > 1 and plan.last == index
    active = [i for i in range(S) if not (i == 0 and feeds and not plan.conv_ahead)]
    skip = B if feeds and plan.conv_ahead else 0  # rows of no output
    mixes, news, hes, invalid, future = [], [], [], [], None
    for i, (proj, st, sp, hi) in enumerate(zip(projs, sts, sps, hs, strict=True)):
        need = i in active
        mix, new, out = step(
            plan, mixer, proj, st, sp, a, end, future if sp.future else None, need
        )
        future = future or out
        hf = _append(st["h"], hi, 1)
        he, new["h"] = hf[:, :n], hf[:, n:]
        news.append(new)
        if need:
            mixes.append(mix)
            hes.append(he)
            invalid.append(_frames_valid(a - sp.d_out, end, n, x.device))
    if plan.kind == "swsm":  # one combiner product for every stream
        le, win, run = (_cat(p) if p[0] is not None else None for p in zip(*mixes))
        mixes = [plan.combine(mixer, le, [win, run], win.dtype, n)]
    mix, he = _cat(mixes), _cat(hes)
    if all(m is None for m in invalid):
        invalid = None
    else:
        invalid = _cat(
            [
                (
                    ~m
                    if m is not None
                    else torch.zeros_like(x[0, :, 0], dtype=torch.bool)
                )
                .view(1, n, 1)
                .expand(B, n, 1)
                for m in invalid
            ]
        )
    if arch == "c":
        he = he + mix
        cache = _cat([sts[i]["conv"] for i in active])
        c, conv = _conformer_conv(plan, layer.conv, he, cache, invalid, skip)
        he = he[skip:] + c
        y = _ln(torch.add(he, _ffn(plan, layer.ffn2, he), alpha=0.5), layer.norm_out)
    elif arch == "t":
        he = he + mix
        y, conv = he + _ffn(plan, layer.ffn, he), None
    else:  # Branchformer
        g = layer.cgmlp
        pre = _act(g.activation, plan.linear(g.pre, _ln(he, layer.norm_mlp)))
        pa, pb = pre.chunk(2, dim=-1)
        cache = _cat([sts[i]["conv"] for i in active])
        c, conv = _conv_step(g.conv, _ln(pb, g.norm), cache, invalid)
        cg = plan.linear(g.post, pa * c)
        y = he + plan.linear(layer.merge, torch.cat([mix, cg], dim=-1))
    if conv is not None:
        for i, part in zip(active, _split(conv, len(active)), strict=True):
            news[i]["conv"] = part
        for i in range(S):
            news[i].setdefault("conv", sts[i]["conv"])
    outs = active[1:] if skip else active
    ys = _split(y, len(outs))
    return [ys[outs.index(i)] if i in outs else None for i in range(S)], news


_ARCH = {"ConformerLayer": "c", "TransformerLayer": "t", "BranchformerLayer": "b"}


class StepPlan:
    """What :func:`encoder_step` prepares once per encoder: the stream specs,
    the layer kind, and the linear layers (the parameters themselves, or with
    ``int8`` their dynamically quantised copies).

    ``int8=True`` (opt-in; not equal to the offline forward): every linear
    layer of the blocks (feed-forwards, attention projections, the
    Conformer convolution module's pointwise layers, the Branchformer's)
    runs as PyTorch's dynamic int8 linear (``quantized::linear_dynamic``,
    weights per output channel, activations quantised per call); the
    SummaryMixing projections, norms, attention and convolutions stay float.
    """

    def __init__(self, enc, int8: bool = False):
        arch = type(enc.layers[0]).__name__
        if arch not in _ARCH:
            raise ValueError(f"incremental streaming does not know layer {arch}")
        self.arch = _ARCH[arch]
        self.kind = _kind(enc.layers[0].mixer)
        self.specs = stream_specs(enc)
        self.names = [list(sp) for sp in self.specs]
        self.last = len(enc.layers) - 1
        #: LLSA with look-ahead convolutions: the causal stream's convolution
        #: inputs are computed in the last layer too
        self.conv_ahead = any(
            getattr(_conv_channels(layer), "ahead", 0) for layer in enc.layers
        )
        self.int8 = int8
        self.packed = {}
        #: widening float layers (``out > in``) on the CPU: ``(weight.T
        #: contiguous, bias)``, for the products of one row (:meth:`linear`;
        #: a layer that sees more rows, e.g. LLSA's two streams, never reads it)
        self.wide = {}
        for layer in enc.layers:
            for mod in layer.modules():
                pointwise = isinstance(mod, torch.nn.Conv1d) and mod.kernel_size == (1,)
                if not (isinstance(mod, torch.nn.Linear) or pointwise):
                    continue
                weight = mod.weight[:, :, 0] if pointwise else mod.weight
                if int8:
                    self.packed[mod] = _pack(weight, mod.bias)
                elif weight.shape[0] > weight.shape[1] and not weight.is_cuda:
                    self.wide[mod] = (weight.detach().t().contiguous(), mod.bias)
        #: streaming WSM mixers: their two projections as one stack of grouped
        #: layers, and their combiner with the LayerNorms' scales folded in
        self.fused_proj, self.fused_comb = {}, {}
        if self.kind == "swsm":
            for layer in enc.layers:
                proj = _fuse_projections(layer.mixer)
                if proj is not None:
                    self.fused_proj[layer.mixer] = proj
                comb = _fold_combiner(layer.mixer)
                if comb is not None:
                    self.fused_comb[layer.mixer] = comb

    def branches(self, mixer, z: torch.Tensor):
        """``mixer._branches(z)``: the local and summary features of the
        frames ``z`` ``[B, n, D]``.

        The two grouped MLPs of a ``full`` mixer run as one: the first layers
        side by side (one ``[G, D / G, 2 h / G]`` batched product), the later
        ones block-diagonal between the branches within each group, so each
        layer is one ``baddbmm`` and one activation for both branches.
        """
        fused = self.fused_proj.get(mixer)
        if fused is None:
            return mixer._branches(z)
        layers, act, local_out = fused
        B, n, D = z.shape
        G = layers[0][0].shape[0]
        h = z.reshape(B * n, G, D // G).transpose(0, 1)
        for w, b in layers:
            h = act(torch.baddbmm(b, h, w))
        h = h.transpose(0, 1)  # [B n, G, local + summary per group]
        local = h[..., :local_out].reshape(B, n, -1)
        return local, h[..., local_out:].reshape(B, n, -1)

    def combine(self, mixer, local, summaries, dtype, n: int) -> torch.Tensor:
        """``mixer._combine(local, summaries, dtype, n)`` for ``n`` frames.

        With LayerNorms of one size on every input, the inputs are normalised
        together (one ``[..., parts, C]`` ``layer_norm`` without its affine
        part) and the scales and shifts are folded into the combiner's weight
        and bias: one matrix product instead of one per input. The same map,
        summed in another order: equal to float rounding.
        """
        fused = self.fused_comb.get(mixer)
        if fused is None:
            return mixer._combine(local, summaries, dtype, n)
        wt, bias, eps, act = fused
        parts = [] if local is None else [local.to(dtype)]  # lite: no local
        parts = torch.stack(parts + list(summaries), dim=-2)
        C = parts.shape[-1]
        normed = F.layer_norm(parts, (C,), eps=eps).flatten(-2)
        y = torch.addmm(bias.to(dtype), normed.reshape(-1, wt.shape[0]), wt.to(dtype))
        return act(y).view(*parts.shape[:-2], wt.shape[1])

    def linear(self, mod, x: torch.Tensor) -> torch.Tensor:
        """``mod(x)`` for a ``Linear`` (or a pointwise ``Conv1d`` on frames
        ``[..., in]``).

        A widening float layer given a single row multiplies by a
        contiguous copy of its transposed weight: CPU BLAS reads a ``[in,
        out]`` matrix (long rows) faster there (measured interleaved on a
        2-core Xeon, one thread, 256 -> 1024, weights cold: 64 against 75
        µs), but from two rows on (LLSA's two streams, chunks of several
        frames) the ``[out, in]`` weight is faster (2 / 4 / 8 rows: 79 /
        117 / 137 against 99 / 135 / 169 µs); narrowing layers are fastest
        as they are. The same products, summed in another order: equal to
        float rounding.
        """
        packed = self.packed.get(mod) if self.packed else None
        if packed is not None and not x.is_cuda:
            return torch.ops.quantized.linear_dynamic(x.contiguous(), packed, True)
        wide = self.wide.get(mod)
        if wide is not None and not x.is_cuda and x.numel() == x.shape[-1]:  # one row
            wt, bias = wide
            x2 = x.reshape(-1, x.shape[-1])
            y = torch.mm(x2, wt) if bias is None else torch.addmm(bias, x2, wt)
            return y.view(*x.shape[:-1], wt.shape[1])
        weight = mod.weight
        if weight.dim() == 3:
            weight = weight[:, :, 0]
        return F.linear(x, weight, mod.bias)


def _fuse_projections(mixer):
    """The grouped layers of a ``full`` mixer's local and summary MLPs as one
    stack (see :meth:`StepPlan.branches`), its activation and the local
    output size per group; None unless the mixer is ``full`` and its two
    MLPs agree in depth, groups and activation."""
    lp, sp = mixer.local_proj, mixer.summary_proj
    if lp is None or sp is None or mixer.mode != "full":
        return None
    if len(lp.weights) != len(sp.weights) or lp.groups != sp.groups:
        return None
    if repr(lp.activation) != repr(sp.activation):
        return None
    layers = []
    with torch.no_grad():
        for i, (wl, bl, ws, bs) in enumerate(
            zip(lp.weights, lp.biases, sp.weights, sp.biases, strict=True)
        ):
            if i == 0:
                w = torch.cat([wl, ws], dim=2)
            else:  # block-diagonal; no in-place writes (ONNX export traces this)
                ol, os_ = wl.shape[2], ws.shape[2]
                w = torch.cat([F.pad(wl, (0, os_)), F.pad(ws, (ol, 0))], dim=1)
            layers.append((w.contiguous(), torch.cat([bl, bs], dim=2)))
    return layers, lp.activation, lp.weights[-1].shape[2]


def _fold_combiner(mixer):
    """``(weight.T [parts C, D], bias, eps, activation)`` of a mixer's
    combiner with its input LayerNorms' scales and shifts folded in; None
    unless every input has a LayerNorm of the same size and epsilon."""
    norms = list(mixer.norms)
    if mixer.combiner is None or not norms:
        return None
    if not all(isinstance(m, torch.nn.LayerNorm) for m in norms):
        return None
    if len({(m.normalized_shape, m.eps) for m in norms}) != 1:
        return None
    if any(m.weight is None for m in norms):
        return None
    with torch.no_grad():
        scale = torch.cat([m.weight for m in norms])
        shift = (
            torch.cat([m.bias for m in norms]) if norms[0].bias is not None else None
        )
        w = mixer.combiner.weight
        bias = mixer.combiner.bias
        bias = bias.clone() if bias is not None else w.new_zeros(w.shape[0])
        if shift is not None:
            bias = bias + w @ shift
        wt = (w * scale).t().contiguous()
    return wt, bias, norms[0].eps, mixer.combiner_activation


def _pack(weight: torch.Tensor, bias):
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero = torch.zeros(w.shape[0], dtype=torch.long, device=w.device)
    qw = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(
        qw, None if bias is None else bias.detach().float()
    )


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def step_plan(enc, int8: bool = False) -> StepPlan:
    """The cached :class:`StepPlan` of ``enc``, rebuilt when a parameter was
    replaced or changed in place (training, ``load_state_dict``, ``.to()``)."""
    if torch.compiler.is_compiling():  # export traces: no cache side effects
        return StepPlan(enc, int8)
    key = tuple((p.data_ptr(), p._version) for p in enc.parameters())
    plans = _PLANS.setdefault(enc, {})
    hit = plans.get(int8)
    if hit is None or hit[0] != key:
        hit = plans[int8] = (key, StepPlan(enc, int8))
    return hit[1]


def encoder_step(enc, x: torch.Tensor, state: dict, end=None, plan=None):
    """Feed ``n`` new input frames; get ``n`` output frames and the new state.

    Arguments
    ---------
    enc : StreamingEncoder
        In eval mode.
    x : torch.Tensor
        ``[batch, n, d_model]``, input frames at positions ``pos ... pos + n - 1``
        (``pos = state["pos"]``).
    state : dict
        From :func:`init_state` or the previous step (``state["int8"]``: run
        the linear layers in int8, see :class:`StepPlan`).
    end : int, optional
        Number of real input frames of the stream, once known (frames from
        ``end`` on are flush padding); None: all fed frames are real.
    plan : StepPlan, optional
        The encoder's :func:`step_plan` (the compiled step passes the one it
        was traced with).

    Returns
    -------
    y : torch.Tensor
        ``[batch, n, d_model]``: the encoder output (after its final
        LayerNorm) at positions ``pos - lookahead ... pos - lookahead + n - 1``.
    state : dict
        The caches after this step.
    """
    a = state["pos"]
    int8 = bool(state.get("int8", False))
    plan = plan or step_plan(enc, int8)
    layers = []
    streams = [x, x] if enc.low_latency else [x]
    for i, (layer, st, names) in enumerate(
        zip(enc.layers, state["layers"], plan.names, strict=True)
    ):
        specs = plan.specs[i]
        streams, news = _layer_step(
            plan,
            i,
            layer,
            streams,
            [st[k] for k in names],
            [specs[k] for k in names],
            a,
            end,
        )
        layers.append(dict(zip(names, news, strict=True)))
    out = {"pos": a + x.shape[1], "layers": layers}
    if int8:
        out["int8"] = True
    return enc.norm(streams[-1]), out


def state_from_tensors(enc, tensors, pos) -> dict:
    """The inverse of :func:`state_tensors`: a state of ``enc`` from its
    cache tensors (in that order) and ``pos``."""
    template = init_state(enc, 1)
    it = iter(tensors)
    layers = []
    for per_layer in template["layers"]:
        layers.append(
            {
                name: {k: next(it) for k in sorted(per_layer[name])}
                for name in sorted(per_layer)
            }
        )
    rest = list(it)
    if rest:
        raise ValueError(f"{len(rest)} cache tensors more than the encoder has")
    return {"pos": pos, "layers": layers}


_BIG = 1 << 40  # ``end`` of a stream whose end is not known yet


def _canonical(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of a new contiguous tensor (the compiled step's
    guards compare strides, size-1 and empty axes included)."""
    if t.stride() == torch.empty(t.shape).stride():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def compiled_step(enc, x: torch.Tensor, state: dict):
    """:func:`encoder_step` through ``torch.compile`` (opt-in: ``stream(...,
    compiled=True)``), for steps of the frame count it was compiled for.

    One graph per encoder, batch and frame count (``dynamic=False``): the
    positions are tensors (the masks of the stream's start are computed, as in
    the exported step), so the same graph serves every chunk of that size,
    from the first one on; Inductor fuses the per-frame operators between
    the matrix products and runs without the Python of the eager step. Its
    outputs differ from :func:`encoder_step`'s by float rounding only (the
    tests hold them within 1e-5). Compiling takes a while (about a minute
    for the 12-layer recipe encoder on one CPU core) and is paid once per
    encoder and chunk size; the graph is rebuilt when a parameter changes.
    """
    plan = step_plan(enc, bool(state.get("int8", False)))
    entry = getattr(enc, "_compiled_step", None)
    if entry is None or entry[0] is not plan:

        def step(x, pos, end, *caches):
            st = state_from_tensors(enc, caches, pos)
            y, new = encoder_step(enc, x, st, end=end, plan=plan)
            return (y, *state_tensors(new))

        compiled = torch.compile(step, fullgraph=True, dynamic=False)
        entry = [plan, compiled, None]  # None: are its outputs' strides canonical?
        object.__setattr__(enc, "_compiled_step", entry)
    caches = state_tensors(state)
    if not state.get("canonical"):  # from the eager step: strides of its own
        caches = [_canonical(t) for t in caches]
    pos = torch.tensor(state["pos"])
    y, *caches = entry[1](_canonical(x), pos, torch.tensor(_BIG), *caches)
    if entry[2] is None:
        entry[2] = all(t is _canonical(t) for t in caches)
    new = state_from_tensors(enc, caches, state["pos"] + x.shape[1])
    new["canonical"] = entry[2]
    if state.get("int8"):
        new["int8"] = True
    return y, new
