"""Incremental streaming of a :class:`~speechbrain_wsm.nnet.streaming_encoder.StreamingEncoder`.

Each call of :func:`encoder_step` takes the next ``n`` input frames and
computes only ``n`` new frames in every layer, from fixed-size caches:

==================  ============================================================
cache               what it holds (per layer and per stream)
==================  ============================================================
``h``               the residual stream of the ``P`` frames waiting for their
                    look-ahead (``P = R`` where the layer adds look-ahead, else 0)
``q``, ``k``, ``v`` attention (``maa``, ``sa``): queries of the waiting frames,
                    keys and values of the last ``L + P`` frames
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
attention of ``n`` queries over windows of ``L + R + 1`` keys.

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
``c``'s caches of the same layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from speechbrain_wsm.nnet.streaming import StreamingWSM, _BandAttentionBase

__all__ = ["init_state", "encoder_step", "state_tensors", "StreamSpec"]


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
    raise ValueError(
        f"incremental streaming supports maa, sa and swsm mixers, got "
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
            if _kind(mixer) == "attention":
                H = mixer.nhead
                dh = D // H
                st["q"] = torch.zeros(
                    batch, H, sp.pending, dh, device=device, dtype=dtype
                )
                st["k"] = torch.zeros(batch, H, sp.keep, dh, device=device, dtype=dtype)
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
                k = conv.kernel_size[0]
                st["conv"] = torch.zeros(
                    batch, conv.in_channels, k - 1, device=device, dtype=dtype
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


def _append(cache: torch.Tensor, new: torch.Tensor, dim: int) -> torch.Tensor:
    """``cat([cache, new])``, without the copy when the cache is empty."""
    return torch.cat([cache, new], dim=dim) if cache.shape[dim] else new


def _tail(t: torch.Tensor, keep: int, dim: int) -> torch.Tensor:
    return t.narrow(dim, t.shape[dim] - keep, keep)


def _windows(t: torch.Tensor, start: int, n: int, width: int) -> torch.Tensor:
    """``[B, H, F, dh]`` -> ``[B, H, n, width, dh]``: frames ``start + j ...
    start + j + width - 1`` for ``j < n``."""
    return t[:, :, start : start + n + width - 1].unfold(2, width, 1).transpose(-1, -2)


def _attention_step(mixer, proj, st, sp, a, end, future):
    """Attention of the ``n`` frames leaving the queue; new caches; this
    stream's keys and values (for the look-ahead stream's future)."""
    q_new, k_new, v_new = proj
    n, device = q_new.shape[2], q_new.device
    kf = _append(st["k"], k_new, 2)  # positions a - d_in - keep ...
    vf = _append(st["v"], v_new, 2)
    qf = _append(st["q"], q_new, 2)
    q = qf[:, :, :n]
    L, Rs, P = sp.left, sp.right, sp.pending
    base = sp.keep - P - L
    width = L + Rs + 1
    keys, values = _windows(kf, base, n, width), _windows(vf, base, n, width)
    qpos = _positions(a - sp.d_out, n, device)
    offsets = torch.arange(-L, Rs + 1, device=device)
    if sp.future:
        ck, cv, ckeep = future
        start = ckeep - sp.future + 1  # c frame of offset 1 for query 0
        keys = torch.cat([keys, _windows(ck, start, n, sp.future)], dim=3)
        values = torch.cat([values, _windows(cv, start, n, sp.future)], dim=3)
        offsets = torch.arange(-L, sp.future + 1, device=device)
    allowed = _valid(qpos[:, None] + offsets[None, :], end) | (offsets == 0)
    scores = torch.einsum("bhnd,bhnwd->bhnw", q * q.shape[-1] ** -0.5, keys)
    p = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    y = mixer.merge_heads(torch.einsum("bhnw,bhnwd->bhnd", p, values))
    new = {
        "q": qf[:, :, n:],
        "k": _tail(kf, sp.keep, 2),
        "v": _tail(vf, sp.keep, 2),
    }
    return y, new, (kf, vf, sp.keep)


def _range(cum: torch.Tensor, lo: int, hi: int, n: int) -> torch.Tensor:
    """Sums over cache frames ``[lo + j, hi + j]`` for ``j < n`` from the
    zero-led prefix sum ``cum``."""
    return cum[:, hi + 1 : hi + 1 + n] - cum[:, lo : lo + n]


def _prefix(t: torch.Tensor) -> torch.Tensor:
    zero = t.new_zeros((t.shape[0], 1) + t.shape[2:])
    return torch.cat([zero, t.cumsum(1)], dim=1)


def _swsm_step(mixer, proj, st, sp, a, end, future):
    """Streaming WSM of the ``n`` frames leaving the queue; new caches; this
    stream's summary features and validity (for the look-ahead stream)."""
    local, summ = proj
    n, device, dtype = summ.shape[1], summ.device, summ.dtype
    start = a - sp.d_in - sp.keep  # position of cache frame 0
    nf = _valid(_positions(start, sp.keep + n, device), end).to(torch.float32)
    nf = nf[None].expand(summ.shape[0], -1)
    u_new = summ.float() * nf[:, sp.keep :, None]
    uf = torch.cat([st["u"], u_new], dim=1)
    cu, cn = _prefix(uf), _prefix(nf)
    L, Rs, P, K = sp.left, sp.right, sp.pending, sp.keep
    q0 = K - P  # cache index of the first query
    win_u, win_n = _range(cu, q0 - L, q0 + Rs, n), _range(cn, q0 - L, q0 + Rs, n)
    run_u = st["acc"][:, None] + cu[:, q0 + Rs + 1 : q0 + Rs + 1 + n]
    run_n = st["acc_n"][:, None] + cn[:, q0 + Rs + 1 : q0 + Rs + 1 + n]
    if sp.future:
        fcu, fcn, fkeep = future
        # causal-stream frames (t, t + R]: cache index fkeep - R + 1 + j ...
        lo = fkeep - sp.future + 1
        fu = _range(fcu, lo, lo + sp.future - 1, n)
        fn = _range(fcn, lo, lo + sp.future - 1, n)
        win_u, win_n, run_u, run_n = win_u + fu, win_n + fn, run_u + fu, run_n + fn
    win = win_u / win_n.clamp(min=1.0).unsqueeze(-1)
    run = run_u / run_n.clamp(min=1.0).unsqueeze(-1)
    le = None
    new = {
        "u": uf[:, n:],
        "acc": st["acc"] + uf[:, :n].sum(1),
        "acc_n": st["acc_n"] + nf[:, :n].sum(1),
    }
    if local is not None:
        lf = _append(st["local"], local, 1)
        le, new["local"] = lf[:, :n], lf[:, n:]
    y = mixer._combine(le, [win.to(dtype), run.to(dtype)], dtype, n)
    return y, new, (cu, cn, K)


def _conv_step(conv: torch.nn.Conv1d, b, cache, valid):
    """Causal depthwise convolution of ``b`` ``[B, C, n]`` after ``cache``
    ``[B, C, K - 1]``; frames outside the stream (``valid`` ``[B, n]`` False)
    are zeros, its padding."""
    b = torch.where(valid[:, None, :], b, b.new_zeros(()))
    full = _append(cache, b, 2)
    K = conv.kernel_size[0]
    if b.shape[2] <= 4:  # a few frames: cheaper than the convolution kernel
        w = conv.weight[:, 0]
        out = torch.einsum("bcnk,ck->bcn", full.unfold(2, K, 1), w)
        if conv.bias is not None:
            out = out + conv.bias[:, None]
    else:
        out = F.conv1d(full, conv.weight, conv.bias, groups=conv.groups)
    return out, _tail(full, cache.shape[2], 2)


def _split(t: torch.Tensor, parts: int, dim: int = 0):
    return t.chunk(parts, dim=dim) if parts > 1 else (t,)


def _cat(ts, dim: int = 0) -> torch.Tensor:
    return torch.cat(ts, dim=dim) if len(ts) > 1 else ts[0]


def _layer_step(layer, xs, sts, sps, a, end, kind):
    """The streams of one layer (LLSA: causal then look-ahead), stacked on
    the batch axis for every per-frame part: ``xs[i]`` ``[B, n, D]`` at
    positions ``a - d_in ...`` -> outputs at positions ``a - d_out ...``."""
    S, n = len(xs), xs[0].shape[1]
    B = xs[0].shape[0]
    x = _cat(xs)
    arch = type(layer).__name__
    h = x + 0.5 * layer.ffn1(x) if arch == "ConformerLayer" else x
    z = layer.norm_mixer(h)
    if kind == "attention":
        projs = zip(*(_split(t, S) for t in layer.mixer.split_heads(z)), strict=True)
        step = _attention_step
    else:
        local, summ = layer.mixer._branches(z)
        locals_ = _split(local, S) if local is not None else (None,) * S
        projs = zip(locals_, _split(summ, S), strict=True)
        step = _swsm_step
    mixes, news, hes, valids, shared = [], [], [], [], None
    for proj, st, sp, hi in zip(projs, sts, sps, _split(h, S), strict=True):
        mix, new, out = step(
            layer.mixer, proj, st, sp, a, end, shared if sp.future else None
        )
        shared = shared or out
        hf = _append(st["h"], hi, 1)
        he, new["h"] = hf[:, :n], hf[:, n:]
        mixes.append(mix)
        hes.append(he)
        news.append(new)
        valids.append(
            _valid(_positions(a - sp.d_out, n, x.device), end)[None].expand(B, n)
        )
    mix, he, valid = _cat(mixes), _cat(hes), _cat(valids)
    if arch == "ConformerLayer":
        he = he + mix
        cm = layer.conv
        b = cm.bottleneck(cm.layer_norm(he).transpose(1, 2))
        cache = _cat([st["conv"] for st in sts])
        c, conv = _conv_step(cm.conv, b, cache, valid)
        he = he + cm.after_conv(c.transpose(1, 2))
        y = layer.norm_out(he + 0.5 * layer.ffn2(he))
    elif arch == "TransformerLayer":
        he = he + mix
        y, conv = he + layer.ffn(he), None
    elif arch == "BranchformerLayer":
        g = layer.cgmlp
        pa, pb = g.activation(g.pre(layer.norm_mlp(he))).chunk(2, dim=-1)
        cache = _cat([st["conv"] for st in sts])
        c, conv = _conv_step(g.conv, g.norm(pb).transpose(1, 2), cache, valid)
        cg = g.post(pa * c.transpose(1, 2))
        y = he + layer.merge(torch.cat([mix, cg], dim=-1))
    else:
        raise ValueError(f"incremental streaming does not know layer {arch}")
    if conv is not None:
        for new, part in zip(news, _split(conv, S), strict=True):
            new["conv"] = part
    return _split(y, S), news


def encoder_step(enc, x: torch.Tensor, state: dict, end=None):
    """Feed ``n`` new input frames; get ``n`` output frames and the new state.

    Arguments
    ---------
    enc : StreamingEncoder
        In eval mode.
    x : torch.Tensor
        ``[batch, n, d_model]``, input frames at positions ``pos ... pos + n - 1``
        (``pos = state["pos"]``).
    state : dict
        From :func:`init_state` or the previous step.
    end : int, optional
        Number of real input frames of the stream, once known (frames from
        ``end`` on are flush padding); None: all fed frames are real.

    Returns
    -------
    y : torch.Tensor
        ``[batch, n, d_model]``: the encoder output (after its final
        LayerNorm) at positions ``pos - lookahead ... pos - lookahead + n - 1``.
    state : dict
        The caches after this step.
    """
    a = state["pos"]
    kind = _kind(enc.layers[0].mixer)
    layers = []
    streams = [x, x] if enc.low_latency else [x]
    for layer, st, specs in zip(
        enc.layers, state["layers"], stream_specs(enc), strict=True
    ):
        names = list(specs)
        streams, news = _layer_step(
            layer,
            streams,
            [st[k] for k in names],
            [specs[k] for k in names],
            a,
            end,
            kind,
        )
        layers.append(dict(zip(names, news, strict=True)))
    return enc.norm(streams[-1]), {"pos": a + x.shape[1], "layers": layers}


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
