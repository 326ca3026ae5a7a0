"""The memory-lean training path of SummaryMixing and Windowed SummaryMixing.

One :class:`torch.autograd.Function` runs a whole SM / WSM layer (projections,
masked summaries, LayerNorms, dropout, combiner) and writes its backward by
hand, so that it decides what is kept for backward instead of every small
operation keeping its own input:

* kept: the layer input (cast to the compute dtype, as a matrix product would
  keep it, in the projections' group-major layout), the pre-activations of
  every projection layer but the last, the combiner's pre-activation, and
  the dropout masks (bool);
* recomputed in backward: every activation (elementwise), the last grouped
  projection layer of each branch (a block-diagonal product: ``1 / nhead`` of
  a dense one), the LayerNorms, the masked means and the window box filter
  (prefix sums, ``O(T * D)``).

For the default two-layer projections that is four ``[frame, d_model]``
tensors per frame, where the autograd of the plain layer keeps ten (SM) or
twelve (WSM), and PyTorch's SDPA attention block with its projections five.
Outputs and gradients equal the plain layer's (the tests hold both paths to
each other, and to the frame-by-frame definition).

Mixed precision: under ``torch.autocast`` the products run in the autocast
dtype and the LayerNorms, means and sums in float32, as autocast would run
the plain layer; the gradients of the parameters come back in their own dtype.

Compiled (:func:`compile_backend`, what ``MixerEncoder.compile_layers`` and
the benchmarks use): ``torch.compile`` traces the forward and this backward
into one joint graph before AOTAutograd splits it again into a forward and a
backward graph. By default it first merges identical operations
(common-subexpression elimination), and a recomputation in the backward is
identical to the forward operation it repeats: merged, the backward reads
the forward's result, so the split keeps it for backward, and the layer
keeps what it was written to recompute. :func:`compile_backend` is Inductor
with that merge off, so the compiled layer keeps what the eager one does.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_wsm.nnet import frame_sums

__all__ = [
    "activation_kind",
    "compile_backend",
    "lean_forward",
    "LeanMixing",
    "without_joint_cse",
]

_aten = torch.ops.aten


def activation_kind(module: nn.Module) -> str | None:
    """The name of an activation whose derivative the lean path knows, or None.

    Example
    -------
    >>> activation_kind(nn.GELU()), activation_kind(nn.Tanh())
    ('gelu', None)
    """
    if isinstance(module, nn.GELU):
        return "gelu" if module.approximate == "none" else "gelu_tanh"
    if isinstance(module, nn.SiLU):
        return "silu"
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.Identity):
        return "identity"
    return None


def _act(kind: str, z: torch.Tensor) -> torch.Tensor:
    if kind == "gelu":
        return F.gelu(z)
    if kind == "gelu_tanh":
        return F.gelu(z, approximate="tanh")
    if kind == "silu":
        return F.silu(z)
    if kind == "relu":
        return F.relu(z)
    return z


def _act_grad(kind: str, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g * act'(z)``, with the same kernels autograd uses."""
    if kind == "gelu":
        return _aten.gelu_backward(g, z)
    if kind == "gelu_tanh":
        return _aten.gelu_backward(g, z, approximate="tanh")
    if kind == "silu":
        return _aten.silu_backward(g, z)
    if kind == "relu":
        return _aten.threshold_backward(g, z, 0)
    return g


def _to_groups(h: torch.Tensor, groups: int) -> torch.Tensor:
    """``[..., F]`` -> group-major ``[groups, N, F / groups]`` (a copy).

    Contiguous, because a batched product reads the strided view about 1.3x
    slower on CPU (d_model 256, 4 groups, 12000 frames, one thread) than the
    copy costs, and each of these tensors meets two products.
    """
    return h.reshape(-1, groups, h.shape[-1] // groups).transpose(0, 1).contiguous()


def _from_groups(h: torch.Tensor, lead) -> torch.Tensor:
    """``[groups, N, F / groups]`` -> ``[*lead, F]`` (a copy)."""
    return h.transpose(0, 1).reshape(*lead, h.shape[0] * h.shape[2])


def _mlp_forward(h, weights, biases, kind: str, lead):
    """Pre-activations of every layer of a grouped MLP (input ``[G, N, F]``).

    The hidden ones stay in the group-major layout; the last one comes back
    as ``[*lead, F]`` (one layout copy, which the plain layer makes of the
    activation instead), so the activation, its derivative and everything
    after run on contiguous tensors.
    """
    zs = []
    for w, b in zip(weights, biases, strict=True):
        zs.append(torch.baddbmm(b, h if not zs else _act(kind, zs[-1]), w))
    zs[-1] = _from_groups(zs[-1], lead)
    return zs


def _mlp_backward(h, zs, weights, g, kind: str, groups: int, acc=None, hidden=None):
    """Gradients of a grouped MLP from ``g`` = d loss / d act(last layer).

    ``g`` and the last pre-activation are ``[..., F]``; the others are in the
    group layout. Returns the input's gradient (group layout, added to
    ``acc`` when given) and the weights' and biases' gradients. ``hidden``:
    the activations of the hidden layers when already recomputed.
    """
    g = _to_groups(_act_grad(kind, zs[-1], g), groups)
    gws, gbs = [None] * len(weights), [None] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        if i == 0:
            inp = h
        elif hidden is not None:
            inp = hidden[i - 1]
        else:
            inp = _act(kind, zs[i - 1])
        gws[i] = torch.bmm(inp.transpose(1, 2), g)
        gbs[i] = g.sum(1, keepdim=True)
        w_t = weights[i].transpose(1, 2)
        if i == 0:
            g = torch.bmm(g, w_t) if acc is None else torch.baddbmm(acc, g, w_t)
        else:
            g = _act_grad(kind, zs[i - 1], torch.bmm(g, w_t))
    return g, gws, gbs


def _counts(spec, n, T: int, device, dtype=torch.float32):
    """Denominators of the window mean (WSM) and of the global or running mean."""
    window = None
    if spec.window is not None:
        left, right = spec.window
        if n is None:
            t = torch.arange(T, device=device)
            window = (t + right).clamp(max=T - 1) - (t - left).clamp(min=0) + 1
            window = window.to(dtype)[None, :, None]
        else:
            window = frame_sums.box_sums(n, left, right).clamp(min=1.0).unsqueeze(-1)
    if spec.causal:
        if n is None:
            glob = torch.arange(1, T + 1, device=device, dtype=dtype)[:, None]
        else:
            glob = n.cumsum(1).clamp(min=1.0).unsqueeze(-1)
    else:
        glob = T if n is None else n.sum(1).clamp(min=1.0)[:, None, None]
    return window, glob


def _summaries(spec, u, counts):
    """Window mean (WSM) and global / running mean of ``u`` (fp32, padding zeroed)."""
    out = []
    if spec.window is not None:
        left, right = spec.window
        out.append(frame_sums.box_sums(u, left, right) / counts[0])
    if spec.causal:
        out.append(frame_sums.box_sums(u, None, 0) / counts[1])
    else:
        out.append(u.sum(1, keepdim=True) / counts[1])
    return out


class _Spec(NamedTuple):
    """The static structure of a layer (a tuple: a compile-time constant)."""

    kind: str  # activation of projections and combiner (activation_kind)
    groups: int  # groups of the projections (1: the dense ``fast`` one)
    n_local: int  # layers of the local projection (0: none or ``fast``)
    n_summary: int  # layers of the summary projection
    fast_split: int  # ``fast``: local features of the dense output (else 0)
    layernorm: bool
    eps: float
    p: float  # dropout on the combiner inputs (0 in eval)
    causal: bool
    window: tuple | None  # WSM: frames (before, after) t


def _unpack(spec, params):
    """Split the flat parameter list (see :func:`_params`)."""
    i = 0

    def take(k):
        nonlocal i
        out = list(params[i : i + k])
        i += k
        return out

    lw, lb = take(spec.n_local), take(spec.n_local)
    sw, sb = take(spec.n_summary), take(spec.n_summary)
    n_parts = _n_parts(spec)
    nw, nb = (take(n_parts), take(n_parts)) if spec.layernorm else ([], [])
    cw, cb = take(1)[0], take(1)[0]
    return lw, lb, sw, sb, nw, nb, cw, cb


class LeanMixing(torch.autograd.Function):
    """A whole SM / WSM layer with a hand-written, memory-lean backward.

    ``forward(x, valid, spec, *params)``: ``x`` ``[B, T, D]``, ``valid``
    ``[B, T]`` bool or None, ``spec`` a :class:`_Spec`, ``params`` the flat
    list of :func:`_params`. Called through :func:`lean_forward`.
    """

    @staticmethod
    def forward(ctx, x, valid, spec, *params):
        dtype = (
            torch.get_autocast_dtype(x.device.type)
            if torch.is_autocast_enabled(x.device.type)
            else x.dtype
        )
        with torch.autocast(x.device.type, enabled=False):
            keep, y = _forward(spec, x.to(dtype), valid, params, dtype)
        ctx.spec, ctx.dtype, ctx.shape = spec, dtype, x.shape
        ctx.x_dtype = x.dtype
        ctx.save_for_backward(*keep)
        return y

    @staticmethod
    def backward(ctx, gy):
        with torch.autocast(gy.device.type, enabled=False):
            grads = _backward(ctx, gy)
        return grads


def _cast(ts, dtype):
    return [t.to(dtype) for t in ts]


def _n_parts(spec) -> int:
    """Combiner inputs: local features (unless lite), window (WSM), global."""
    return int(_has_local(spec)) + (2 if spec.window is not None else 1)


def _has_local(spec) -> bool:
    """Whether the combiner reads local features (not lite)."""
    return spec.n_local > 0 or spec.fast_split > 0


def _features(spec, h, weights, dtype, B: int, T: int):
    """Pre-activations of the local (or None) and summary projections."""
    lw, lb, sw, sb = weights
    summary_z = _mlp_forward(h, sw, sb, spec.kind, (B, T))
    local_z = _mlp_forward(h, lw, lb, spec.kind, (B, T)) if lw else None
    return local_z, summary_z


def _local_and_summary(spec, local_z, summary_z):
    """The activations of the last layers: local features (or None), summary."""
    a = _act(spec.kind, summary_z[-1])
    if spec.fast_split:  # one dense layer: [local | summary] halves
        return a[..., : spec.fast_split], a[..., spec.fast_split :]
    return (None if local_z is None else _act(spec.kind, local_z[-1])), a


def _masked(s, valid):
    """Summary features in float32 with padding zeroed, and the validity."""
    u = s.float()
    if valid is None:
        return u, None
    return u.masked_fill(~valid.unsqueeze(-1), 0.0), valid.float()


def _norm(spec, p, nw, nb):
    """LayerNorm in float32 (as autocast runs it): output, mean, rstd."""
    if not spec.layernorm:
        return p.float(), None, None
    return _aten.native_layer_norm(
        p.float(), [p.shape[-1]], nw.float(), nb.float(), spec.eps
    )


def _recompute_summary(spec) -> bool:
    """Whether backward recomputes the summary projection's last layer.

    It does when that layer is block-diagonal (``nhead`` > 1: ``1 / nhead``
    of a dense product), which keeps one ``[frame, d_model]`` tensor less.
    """
    return spec.groups > 1


def _forward(spec, xd, valid, params, dtype):
    B, T, D = xd.shape
    lw, lb, sw, sb, nw, nb, cw, cb = _unpack(spec, params)
    weights = [_cast(t, dtype) for t in (lw, lb, sw, sb)]
    h = _to_groups(xd, spec.groups)
    local_z, summary_z = _features(spec, h, weights, dtype, B, T)
    local, s = _local_and_summary(spec, local_z, summary_z)
    u, n = _masked(s, valid)
    counts = _counts(spec, n, T, xd.device)
    summaries = _summaries(spec, u, counts)
    parts = ([] if local is None else [local]) + summaries
    masks, normed = [], []
    for i, p in enumerate(parts):
        q = _norm(spec, p, *(nw[i], nb[i]) if spec.layernorm else (None, None))[0]
        if spec.p > 0:
            m = torch.empty(q.shape, device=q.device, dtype=torch.bool)
            m.bernoulli_(1.0 - spec.p)
            q = q * m / (1.0 - spec.p)
            masks.append(m)
        normed.append(q.to(dtype))
    c = _combiner(normed, cw.to(dtype), cb.to(dtype), T)
    y = _act(spec.kind, c)
    # a global (utterance) summary is tiny: keep it rather than recompute it
    glob = summaries[-1] if not spec.causal else None
    if _recompute_summary(spec):
        summary_z = summary_z[:-1]
    keep = [h, valid, c, glob, *masks, *(local_z or []), *summary_z, *params]
    return keep, y


def _combiner(normed, w, b, T: int):
    """``sum_i normed_i @ W_i^T + b``; per-utterance inputs ``[B, 1, k]`` once."""
    out, per_utt, end = None, b, 0
    for q in normed:
        k = q.shape[-1]
        term = F.linear(q, w[:, end : end + k])
        end += k
        if q.shape[1] == 1 and T != 1:
            per_utt = per_utt + term
        else:
            out = term if out is None else out + term
    return out + per_utt


def _part_backward(spec, p, gc, cw, ln, mask, T: int):
    """Backward of one combiner input ``p`` (recomputing its LayerNorm and
    dropout): the combiner weight's gradient, ``d loss / d p`` in float32 and
    the LayerNorm's weight and bias gradients (None without LayerNorm)."""
    k = p.shape[-1]
    p = p.float()
    q, mean, rstd = _norm(spec, p, *ln)
    if mask is not None:
        q = q * mask / (1.0 - spec.p)
    per_utt = p.shape[1] == 1 and T != 1
    g_out = gc.sum(1, keepdim=True, dtype=torch.float32).to(gc.dtype) if per_utt else gc
    g_cw = g_out.reshape(-1, g_out.shape[-1]).t().mm(q.to(gc.dtype).reshape(-1, k))
    del q
    g_q = torch.matmul(g_out, cw).float()
    if mask is not None:
        g_q = g_q * mask / (1.0 - spec.p)
    if not spec.layernorm:
        return g_cw, g_q, None, None
    g_p, g_w, g_b = _aten.native_layer_norm_backward(
        g_q, p, [k], mean, rstd, ln[0].float(), ln[1].float(), [True] * 3
    )
    return g_cw, g_p, g_w, g_b


def _backward(ctx, gy):
    """The layer's backward, recomputing what :func:`_forward` did not keep.

    Ordered so that few ``[frame, feature]`` temporaries are alive at once
    (the eager peak; a compiled graph plans its own buffers): the local
    branch is finished (combiner input, LayerNorm, projection) before the
    summary branch is recomputed, and every recomputed tensor is dropped
    after its last use.
    """
    spec, dtype = ctx.spec, ctx.dtype
    B, T, D = ctx.shape
    saved = list(ctx.saved_tensors)
    h, valid, c, glob = saved[:4]
    i = 4
    masks = saved[i : i + _n_parts(spec)] if spec.p > 0 else []
    i += len(masks)
    local_z = saved[i : i + spec.n_local] if spec.n_local else None
    i += spec.n_local
    n_kept = spec.n_summary - int(_recompute_summary(spec))
    summary_z = saved[i : i + n_kept]
    params = saved[i + n_kept :]
    lw, lb, sw, sb, nw, nb, cw, cb = _unpack(spec, params)
    lwd, swd, cwd = _cast(lw, dtype), _cast(sw, dtype), cw.to(dtype)
    n_parts = _n_parts(spec)
    has_local = _has_local(spec)
    g_cw, g_nw, g_nb = [None] * n_parts, [None] * n_parts, [None] * n_parts
    end = [0]  # the parts come in order: their columns of the combiner

    def part(j, p):
        """Backward of combiner input ``j`` = ``p``: its gradient, float32."""
        k = p.shape[-1]
        cwj = cwd[:, end[0] : end[0] + k]
        end[0] += k
        ln = (nw[j], nb[j]) if spec.layernorm else (None, None)
        mask = masks[j] if masks else None
        g_cw[j], g_p, g_nw[j], g_nb[j] = _part_backward(spec, p, gc, cwj, ln, mask, T)
        return g_p

    # combiner: y = act(c), c = sum_j q_j W_j^T + b
    gc = _act_grad(spec.kind, c, gy.to(c.dtype))
    g_cb = gc.reshape(-1, D).sum(0, dtype=torch.float32)
    g_lw, g_lb, g_x, g_local = [], [], None, None
    if has_local and not spec.fast_split:  # the local branch, start to end
        g_l = part(0, _act(spec.kind, local_z[-1])).to(dtype)
        g_x, g_lw, g_lb = _mlp_backward(h, local_z, lwd, g_l, spec.kind, spec.groups)
        del g_l
    # the summary branch: recompute its last layer, activation and summaries
    summary_hidden = None
    if _recompute_summary(spec):
        summary_hidden = [_act(spec.kind, z) for z in summary_z]
        inp = summary_hidden[-1] if summary_hidden else h
        z = torch.baddbmm(sb[-1].to(dtype), inp, swd[-1])
        summary_z = [*summary_z, _from_groups(z, (B, T))]
        del z, inp
    n = None if valid is None else valid.float()
    counts = _counts(spec, n, T, h.device)
    u = None  # the summary features (float32, padding zeroed), where needed
    if spec.fast_split or spec.window is not None or spec.causal:
        a = _act(spec.kind, summary_z[-1])
        if spec.fast_split:  # one dense layer: [local | summary] halves
            g_local = part(0, a[..., : spec.fast_split]).to(dtype)
            a = a[..., spec.fast_split :]
        if spec.window is not None or spec.causal:  # (the global mean is kept)
            u = _masked(a, valid)[0]
        del a
    j = int(has_local)
    g_u = None
    if spec.window is not None:  # the window mean again, and its gradient
        left, right = spec.window
        window = frame_sums.box_sums(u, left, right).div_(counts[0])
        if not spec.causal:
            u = None
        g_w = part(j, window)
        del window
        g_u = frame_sums.box_sums(g_w.div_(counts[0]), right, left)
        del g_w
        j += 1
    if spec.causal:
        running = frame_sums.box_sums(u, None, 0).div_(counts[1])
        u = None
        g = part(j, running)
        del running
        g = frame_sums.box_sums(g.div_(counts[1]), 0, None)
    else:
        g = part(j, glob) / counts[1]  # [B, 1, S]: broadcasts over frames
    g_u = g if g_u is None else g_u.add_(g)
    del g
    g_u = g_u.expand(B, T, g_u.shape[-1])
    if valid is not None:
        g_u = g_u.masked_fill(~valid.unsqueeze(-1), 0.0)
    g_s = g_u.to(dtype)
    del g_u
    if spec.fast_split:
        g_a = torch.cat([g_local, g_s], dim=-1)
        del g_local, g_s
        g_x, g_sw, g_sb = _mlp_backward(h, summary_z, swd, g_a, spec.kind, 1)
    else:
        g_x, g_sw, g_sb = _mlp_backward(
            h, summary_z, swd, g_s, spec.kind, spec.groups, acc=g_x,
            hidden=summary_hidden,
        )  # fmt: skip
    g_x = _from_groups(g_x, (B, T)).to(ctx.x_dtype)
    pairs = [
        *zip(g_lw, lw),
        *zip(g_lb, lb),
        *zip(g_sw, sw),
        *zip(g_sb, sb),
        *zip(g_nw, nw),
        *zip(g_nb, nb),
        (torch.cat(g_cw, dim=1), cw),
        (g_cb, cb),
    ]
    return (g_x, None, None, *(g.to(t.dtype) for g, t in pairs))


def _params(layer):
    """The flat parameter list and :class:`_Spec` of ``layer``, or None when the
    lean path does not cover its configuration (the plain autograd then runs)."""
    if layer.combiner is None:  # lite SM: no combiner
        return None
    kind = activation_kind(layer.combiner_activation)
    if kind is None:
        return None
    if layer.shared_proj is not None:
        lin, act = layer.shared_proj[0], layer.shared_proj[1]
        if activation_kind(act) != kind:
            return None
        sw, sb = [lin.weight.t()[None]], [lin.bias[None, None]]
        lw, lb, groups, split = [], [], 1, layer.local_out
    else:
        mlps = [layer.summary_proj] + (
            [layer.local_proj] if layer.local_proj is not None else []
        )
        if any(activation_kind(m.activation) != kind for m in mlps):
            return None
        sw, sb = list(layer.summary_proj.weights), list(layer.summary_proj.biases)
        lw = list(layer.local_proj.weights) if layer.local_proj is not None else []
        lb = list(layer.local_proj.biases) if layer.local_proj is not None else []
        groups, split = layer.summary_proj.groups, 0
        if layer.local_proj is not None and layer.local_proj.groups != groups:
            return None
    norms = list(layer.norms)
    layernorm = isinstance(norms[0], nn.LayerNorm)
    if layernorm and any(n.weight is None or n.bias is None for n in norms):
        return None
    nw = [n.weight for n in norms] if layernorm else []
    nb = [n.bias for n in norms] if layernorm else []
    window = None
    if layer.num_window_summaries:
        window = (layer.left, layer.right)
    spec = _Spec(
        kind=kind,
        groups=groups,
        n_local=len(lw),
        n_summary=len(sw),
        fast_split=split,
        layernorm=layernorm,
        eps=norms[0].eps if layernorm else 0.0,
        p=layer.dropout.p if layer.training else 0.0,
        causal=layer.causal,
        window=window,
    )
    return spec, [
        *lw,
        *lb,
        *sw,
        *sb,
        *nw,
        *nb,
        layer.combiner.weight,
        layer.combiner.bias,
    ]


def lean_forward(layer, x: torch.Tensor, valid) -> torch.Tensor | None:
    """The layer's output through :class:`LeanMixing`, or None if not covered."""
    found = _params(layer)
    if found is None:
        return None
    spec, params = found
    return LeanMixing.apply(x, valid, spec, *params)


def without_joint_cse(compiler):
    """The ``torch.compile`` backend ``compiler`` (a callable backend such as
    Inductor's ``compile_fx``) with AOTAutograd's merge of repeated operations
    in the joint graph off (``torch._functorch.config.cse``; see the module
    doc)."""

    def backend(gm, example_inputs):
        from torch._functorch import config as functorch_config

        with functorch_config.patch(cse=False):
            return compiler(gm, example_inputs)

    return backend


# Inductor settings for graphs whose inputs are all on the CPU (measured on a
# 2-core AMD EPYC, one thread, fp32, docs/efficiency.md):
# * ``fallback_random``: dropout through ATen's random kernels. Inductor's own
#   CPU code draws each value with scalar Philox arithmetic, which made a
#   compiled Conformer layer with dropout 0.1 take 1.26-1.33x the eager
#   layer's time (0.96-1.03x with ATen's); it also makes a compiled training
#   step draw the same masks as the eager one under one seed. On CUDA
#   Inductor's generated dropout is fused and fast, so it stays.
# * ``realize_opcount_threshold``: store an elementwise result that several
#   kernels read once it has more than 8 operations (default 30). On the CPU
#   Inductor stores such a result only when it contains ``exp`` or
#   ``sigmoid``; an exact GELU (``erf``) was recomputed inside every kernel
#   that read it (three times in the WSM layer's forward). Compiled WSM at
#   120 s: 1.04x -> 0.97x of eager.
CPU_INDUCTOR_CONFIG = {"fallback_random": True, "realize_opcount_threshold": 8}


def _on_cpu(example_inputs) -> bool:
    tensors = [t for t in example_inputs if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(t.device.type == "cpu" for t in tensors)


def compile_backend(gm, example_inputs):
    """``torch.compile`` backend: Inductor, through :func:`without_joint_cse`,
    with :data:`CPU_INDUCTOR_CONFIG` for graphs that run on the CPU.

    Use it as ``torch.compile(module, backend=compile_backend)`` for any
    module holding SM or WSM layers; other layers compile as with Inductor.
    Bytes kept per frame by a BASE-width Conformer layer with SM (bf16):
    112.6 kB with Inductor's merge, 100.2 kB without (eager: 109.2 kB);
    attention layers keep the same either way (``docs/efficiency.md``).
    """
    from torch._inductor.compile_fx import compile_fx

    config = CPU_INDUCTOR_CONFIG if _on_cpu(example_inputs) else None
    return without_joint_cse(partial(compile_fx, config_patches=config))(
        gm, example_inputs
    )
