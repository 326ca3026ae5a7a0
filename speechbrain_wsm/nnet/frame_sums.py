"""Sums along the frame axis: prefix sums, the blocked frame scan, box sums.

The low-level pieces that SummaryMixing, WSM, their memory-lean training path
(:mod:`speechbrain_wsm.nnet.lean_mixing`) and the streaming caches share:

* :func:`prefix_sums`: a cumulative sum along frames with a leading zero;
* :func:`cumsum_frames`: the cumulative sum of ``[batch, frame, feature]``
  along frames, fast on CPU and CUDA alike;
* :func:`box_sums`: sums over the window ``[t - left, t + right]`` clipped to
  the sequence, from one cumulative sum (``O(T * D)``, no ``T x window``
  tensor).

Callers look :func:`cumsum_frames` and :func:`box_sums` up on this module
(``frame_sums.box_sums(...)``), so that ONNX export
(:mod:`speechbrain_wsm.export`) can swap both for traceable versions in one
place while it exports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["box_sums", "cumsum_frames", "prefix_sums"]

_SCAN_BLOCK = 16


def prefix_sums(x: torch.Tensor) -> torch.Tensor:
    """Cumulative sum along frames with a leading zero: ``out[:, i] = x[:, :i].sum(1)``.

    ``x`` ``[batch, frame, ...]`` -> ``[batch, frame + 1, ...]``.

    Example
    -------
    >>> prefix_sums(torch.tensor([[1.0, 2.0, 3.0]]))
    tensor([[0., 1., 3., 6.]])
    """
    zero = x.new_zeros((x.shape[0], 1) + x.shape[2:])
    return torch.cat([zero, x.cumsum(1)], dim=1)


def cumsum_frames(u: torch.Tensor, before: int = 0, after: int = 0) -> torch.Tensor:
    """Cumulative sum of ``u`` ``[B, T, S]`` along frames, with ``before`` and
    ``after`` zero frames added at the ends (one padded copy at most).

    On CPU ``torch.cumsum`` over a non-innermost dimension runs a slow strided
    loop (about 50 times an elementwise add); here prefix sums inside blocks of
    16 frames come from one batched product with a lower-triangular matrix of
    ones, and a short running sum of the block totals is added on (5 times
    faster at 2000 frames).

    On CUDA a scan along a non-innermost dimension gives each of the ``B * S``
    columns one thread that walks the ``T`` frames in turn: at 6000 frames it
    took milliseconds on an H200 and made WSM 3 times slower than SM. The
    scan runs along the innermost dimension instead, on a transposed copy
    (two extra copies of ``u``, microseconds at these sizes).

    Example
    -------
    >>> u = torch.randn(2, 50, 3)
    >>> torch.allclose(cumsum_frames(u), u.cumsum(1), atol=1e-5)
    True
    >>> cumsum_frames(torch.ones(1, 2, 1), before=1).flatten().tolist()
    [0.0, 1.0, 2.0]
    """
    n = u.shape[1] + before + after
    if u.is_cuda or (not torch.compiler.is_compiling() and n < 2 * _SCAN_BLOCK):
        if before or after:
            u = F.pad(u, (0, 0, before, after))
        if u.is_cuda:  # a compiled CUDA graph uses the compiler's scan
            return u.transpose(1, 2).cumsum(-1).transpose(1, 2).contiguous()
        return u.cumsum(1)
    if torch.compiler.is_compiling():  # one opaque kernel, no branch on T
        return blocked_cumsum(u, before, after)
    return _blocked_cumsum(u, before, after)


def _blocked_cumsum(u: torch.Tensor, before: int, after: int) -> torch.Tensor:
    B, T, S = u.shape
    K = _SCAN_BLOCK
    n = T + before + after
    blocks = F.pad(u, (0, 0, before, after + (-n) % K)).view(B, -1, K, S)
    tri = torch.ones(K, K, dtype=u.dtype, device=u.device).tril()
    out = torch.matmul(tri, blocks)  # prefix sums inside each block
    del blocks
    out[:, 1:] += out[:, :-1, -1].cumsum(1).unsqueeze(2)  # plus earlier blocks
    return out.view(B, -1, S)[:, :n]


@torch.library.custom_op("speechbrain_wsm::blocked_cumsum", mutates_args=())
def blocked_cumsum(u: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """:func:`cumsum_frames` on the CPU's blocks, as one operator for compiled
    graphs: Inductor lowers the blocked form badly (3x the eager layer) and
    ``torch.cumsum`` runs at about 8 ns a value on CPU (a compiled WSM layer
    at 120 s spent a third of its step there), so the graph calls the eager
    blocked scan as one opaque kernel. Its output is exactly
    ``T + before + after`` frames, contiguous whatever ``T``: a view that
    ended inside the last block would make Dynamo guard on ``T % 16``."""
    return _blocked_cumsum(u, before, after).contiguous()


@blocked_cumsum.register_fake
def _(u, before, after):
    B, T, S = u.shape
    return u.new_empty(B, T + before + after, S)


def _blocked_cumsum_setup(ctx, inputs, output):
    ctx.before, ctx.T = inputs[1], inputs[0].shape[1]


def _blocked_cumsum_backward(ctx, grad):
    # out[t] = sum of padded u up to t: the gradient is the reversed scan
    rev = blocked_cumsum(grad.flip(1), 0, 0).flip(1)
    return rev[:, ctx.before : ctx.before + ctx.T], None, None


blocked_cumsum.register_autograd(
    _blocked_cumsum_backward, setup_context=_blocked_cumsum_setup
)


def _frame_cumsum(u: torch.Tensor, before: int = 0, after: int = 0) -> torch.Tensor:
    """Cumulative sum along frames of ``u`` ``[B, T, ...]`` with ``before`` and
    ``after`` zero frames added at the ends."""
    if u.dim() == 3:
        return cumsum_frames(u, before, after)
    if before or after:
        u = F.pad(u, (before, after))
    return u.cumsum(1)


def box_sums(u: torch.Tensor, left: int | None, right: int | None) -> torch.Tensor:
    """Sums of ``u`` over frames ``[t - left, t + right]`` clipped to the sequence.

    ``u`` is ``[B, T]`` or ``[B, T, S]``. ``None`` is an unbounded side
    (``left=None``: running sums from the first frame; ``right=None``: to the
    last). One cumulative sum of ``u`` with ``left + 1`` zero frames before
    and ``right`` after, so that every window, clipped or not, is the
    difference of two of its entries at fixed offsets: no branch or slice
    depends on the number of frames, and a compiled graph serves every length.

    Example
    -------
    >>> u = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    >>> box_sums(u, 1, 0), box_sums(u, None, 0), box_sums(u, 0, None)
    (tensor([[1., 3., 5., 7.]]), tensor([[ 1.,  3.,  6., 10.]]), tensor([[10.,  9.,  7.,  4.]]))
    """
    T = u.shape[1]
    if left is None:
        if right is None:
            return _frame_cumsum(u)[:, T - 1 :].expand_as(u)
        return _frame_cumsum(u, 0, right)[:, right:]
    if right is None:
        c = _frame_cumsum(u, left + 1)  # c[:, t + left + 1]: frames <= t
        return c[:, c.shape[1] - 1 :] - c[:, :T]
    c = _frame_cumsum(u, left + 1, right)
    return c[:, left + 1 + right :] - c[:, :T]
