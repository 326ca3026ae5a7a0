"""Soft-DTW, its divergence, and LASER's temporal regulariser.

Soft dynamic time warping (Cuturi and Blondel, 2017) replaces the ``min`` of
the DTW recursion by a soft minimum with smoothing ``gamma``::

    R[i, j] = D[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])
    softmin_gamma(a) = -gamma * log(sum(exp(-a / gamma)))

with ``D[i, j] = ||x_i - y_j||^2`` and ``R[0, 0] = 0`` (every other border cell
at infinity); ``sdtw(x, y) = R[n, m]``. Soft-DTW of a sequence with itself is
not zero (it is usually negative), so a loss that should vanish on identical
sequences uses the divergence (Blondel, Mensch and Vert, 2021)::

    D(x, y) = sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2

Implementation:

* forward: an anti-diagonal wavefront. Cells with ``i + j = d`` depend only on
  diagonals ``d - 1`` and ``d - 2``, so each diagonal is one vectorised torch
  step over the batch and the diagonal. The matrices are stored skewed (row
  ``d`` holds diagonal ``d``), so every step reads contiguous slices.
* backward: the soft-DTW gradient recursion (the "E matrix", the expected
  alignment) run on the same wavefront in reverse, inside a
  :class:`torch.autograd.Function`. No graph is kept through the loop: memory
  is ``O(T1 * T2)`` per pair. The gradient with respect to ``x`` and ``y``
  then flows through the cost matrix by ordinary autograd.
* unequal lengths: pair ``b`` reads ``R[n_b, m_b]``; since a cell only depends
  on cells above-left of it, padded frames can never change a pair's value,
  and the backward recursion starts at ``(n_b, m_b)`` and never enters padding.
* optional Sakoe-Chiba band ``|i - j| <= band``; ``dtype=torch.float64`` runs
  the recursion in double precision and casts the result back.

The temporal regulariser of LASER (:func:`contrastive_idm`) is the contrastive
inverse difference moment of LAV (Haresh et al., CVPR 2021), written from the
formula in the project's notes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "contrastive_idm",
    "pairwise_sq_dist",
    "soft_dtw",
    "soft_dtw_divergence",
]


def pairwise_sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[batch, T1, T2]`` between frames.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, T1, feature]``.
    y : torch.Tensor
        ``[batch, T2, feature]``.

    Returns
    -------
    torch.Tensor
        ``[batch, T1, T2]``, ``||x_i - y_j||^2`` (clamped at 0).

    Example
    -------
    >>> x = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    >>> pairwise_sq_dist(x, x)
    tensor([[[0., 2.],
             [2., 0.]]])
    """
    xx = (x * x).sum(-1).unsqueeze(-1)
    yy = (y * y).sum(-1).unsqueeze(-2)
    return (xx + yy - 2 * torch.bmm(x, y.transpose(1, 2))).clamp_min(0)


def _check_lengths(lengths, batch, max_len, name, device):
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, device=device).long()
    if lengths.shape != (batch,):
        raise ValueError(
            f"{name} must have shape [{batch}] (one length per pair), "
            f"got {tuple(lengths.shape)}"
        )
    if bool((lengths < 1).any()) or bool((lengths > max_len).any()):
        raise ValueError(
            f"{name} must lie in [1, {max_len}] frames, got {lengths.tolist()}"
        )
    return lengths


def _skew_index(T1: int, T2: int, device) -> torch.Tensor:
    """Flat index into a ``[T1 + 2, T2 + 2]`` grid for every skewed cell.

    Skewed cell ``(d, i)`` is grid cell ``(i, d - i)``; rows ``d`` run over
    ``0 .. T1 + T2 + 2`` and columns ``i`` over ``0 .. T1 + 1``. A ``j``
    outside ``0 .. T2 + 1`` is clamped onto the grid's border column.
    """
    d = torch.arange(T1 + T2 + 3, device=device).unsqueeze(1)
    i = torch.arange(T1 + 2, device=device).unsqueeze(0)
    return i * (T2 + 2) + (d - i).clamp(0, T2 + 1)


def _neg_cost_grid(cost, gamma, x_lengths, y_lengths, band):
    """``-cost / gamma`` on the bordered grid ``[T1 + 2, T2 + 2, B]`` (batch last).

    Border cells, cells past a pair's lengths and cells outside the band hold
    ``-inf`` (no path may enter them).
    """
    B, T1, T2 = cost.shape
    neg = cost * (-1.0 / gamma)
    i = torch.arange(1, T1 + 1, device=cost.device).view(1, T1, 1)
    j = torch.arange(1, T2 + 1, device=cost.device).view(1, 1, T2)
    blocked = None
    if bool((x_lengths < T1).any()) or bool((y_lengths < T2).any()):
        blocked = (i > x_lengths.view(B, 1, 1)) | (j > y_lengths.view(B, 1, 1))
    if band is not None:
        out = (i - j).abs() > band
        blocked = out if blocked is None else blocked | out
    if blocked is not None:
        neg = neg.masked_fill(blocked, -torch.inf)
    grid = torch.full(
        (T1 + 2, T2 + 2, B), -torch.inf, device=cost.device, dtype=cost.dtype
    )
    grid[1 : T1 + 1, 1 : T2 + 1] = neg.permute(1, 2, 0)
    return grid


class _SoftDTW(torch.autograd.Function):
    """``R[n_b, m_b]`` for a batch of cost matrices; E-matrix backward.

    Works in log space on skewed anti-diagonals. With ``q = -R / gamma`` and
    ``c = D / gamma`` the forward recursion is::

        s[i, j] = logaddexp(q[i-1, j-1], q[i-1, j], q[i, j-1])
        q[i, j] = s[i, j] - c[i, j]

    and the E matrix (``dR[n, m] / dD[i, j]``, the expected alignment) obeys
    ``E[i, j] = sum over successors k of E[k] * exp(q[i, j] - s[k])``, i.e.
    ``log E[i, j] = q[i, j] + logaddexp_k(log E[k] - s[k])``: three to four
    torch calls per anti-diagonal in each direction, and no exponential
    weight matrices. The skewed arrays are ``[diagonal, i, batch]``, so that a
    diagonal's cells are one contiguous block. Invalid cells hold
    ``q = -inf`` and ``s = +inf``.
    """

    @staticmethod
    def forward(ctx, cost, gamma, x_lengths, y_lengths, band):
        B, T1, T2 = cost.shape
        dev = cost.device
        grid = _neg_cost_grid(cost, gamma, x_lengths, y_lengths, band)
        flat = _skew_index(T1, T2, dev)
        negc = grid.view(-1, B)[flat.flatten()].view(*flat.shape, B)
        q = torch.full_like(negc, -torch.inf)
        s = torch.full_like(negc, torch.inf)
        q[0, 0] = 0.0
        # one view per diagonal, made once: the loop then only slices them
        qd, sd, cd = q.unbind(0), s.unbind(0), negc.unbind(0)
        for d in range(2, T1 + T2 + 1):
            lo, hi = max(1, d - T2), min(T1, d - 1)
            s_d, q1 = sd[d][lo : hi + 1], qd[d - 1]
            torch.logaddexp(qd[d - 2][lo - 1 : hi], q1[lo - 1 : hi], out=s_d)
            torch.logaddexp(s_d, q1[lo : hi + 1], out=s_d)
            torch.add(s_d, cd[d][lo : hi + 1], out=qd[d][lo : hi + 1])
        batch = torch.arange(B, device=dev)
        values = q[x_lengths + y_lengths, x_lengths, batch] * (-gamma)
        # Cells no path may enter: s = +inf, so that log E - s = -inf there.
        s.masked_fill_(negc == -torch.inf, torch.inf)
        ctx.save_for_backward(q, s, x_lengths, y_lengths)
        ctx.shape = (B, T1, T2)
        return values

    @staticmethod
    def backward(ctx, grad_values):
        q, s, x_lengths, y_lengths = ctx.saved_tensors
        B, T1, T2 = ctx.shape
        dev = q.device
        log_e = torch.full_like(q, -torch.inf)
        h = torch.full_like(q, -torch.inf)  # log E - s
        ends = (x_lengths + y_lengths).tolist()
        seeds: dict[int, list[int]] = {}
        for b, d in enumerate(ends):
            seeds.setdefault(d, []).append(b)
        ed, hd, qd, sd = log_e.unbind(0), h.unbind(0), q.unbind(0), s.unbind(0)
        for d in range(max(ends), 1, -1):
            lo, hi = max(1, d - T2), min(T1, d - 1)
            e_d, h1 = ed[d][lo : hi + 1], hd[d + 1]
            torch.logaddexp(h1[lo + 1 : hi + 2], h1[lo : hi + 1], out=e_d)
            torch.logaddexp(e_d, hd[d + 2][lo + 1 : hi + 2], out=e_d)
            e_d.add_(qd[d][lo : hi + 1])
            if d in seeds:  # E[n_b, m_b] = 1 for the pairs ending here
                bs = torch.tensor(seeds[d], device=dev)
                log_e[d, x_lengths[bs], bs] = 0.0
            torch.sub(e_d, sd[d][lo : hi + 1], out=hd[d][lo : hi + 1])
        # Unskew: grid cell (i, j) sits at skewed (i + j, i). The exponential
        # runs on the gathered (contiguous) cells, before the permute.
        i = torch.arange(1, T1 + 1, device=dev).view(T1, 1)
        j = torch.arange(1, T2 + 1, device=dev).view(1, T2)
        flat = ((i + j) * (T1 + 2) + i).flatten()
        grad_cost = log_e.view(-1, B)[flat].exp_().view(T1, T2, B).permute(2, 0, 1)
        return grad_cost * grad_values.view(B, 1, 1), None, None, None, None


def _prepare(x, y, gamma, x_lengths, y_lengths, band, dtype):
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(
            "soft_dtw expects x [batch, T1, feature] and y [batch, T2, feature], "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            "x and y must share batch and feature sizes, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    B, T1, T2 = x.shape[0], x.shape[1], y.shape[1]
    xl = _check_lengths(x_lengths, B, T1, "x_lengths", x.device)
    yl = _check_lengths(y_lengths, B, T2, "y_lengths", x.device)
    if band is not None:
        band = int(band)
        if band < 0:
            raise ValueError(f"band must be >= 0 frames, got {band}")
        if bool(((xl - yl).abs() > band).any()):
            raise ValueError(
                f"band={band} is narrower than a pair's length difference "
                f"(x_lengths {xl.tolist()}, y_lengths {yl.tolist()}): no path fits"
            )
    if dtype is not None:
        x, y = x.to(dtype), y.to(dtype)
    return x, y, xl, yl, band


def soft_dtw(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma: float = 0.1,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    band: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Soft-DTW between each pair ``(x[b], y[b])``, squared-Euclidean cost.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, T1, feature]``.
    y : torch.Tensor
        ``[batch, T2, feature]``.
    gamma : float
        Smoothing (> 0); ``gamma -> 0`` gives hard DTW.
    x_lengths, y_lengths : torch.Tensor, optional
        ``[batch]`` valid frames of each sequence (default: all).
    band : int, optional
        Sakoe-Chiba band: only cells with ``|i - j| <= band`` are allowed
        (must be at least each pair's length difference).
    dtype : torch.dtype, optional
        Run the computation in this dtype (e.g. ``torch.float64``); the result
        is cast back to ``x``'s dtype.

    Returns
    -------
    torch.Tensor
        ``[batch]``, one value per pair.

    Example
    -------
    >>> x = torch.zeros(1, 3, 2)
    >>> y = torch.ones(1, 2, 2)
    >>> round(soft_dtw(x, y, gamma=1e-3).item(), 2)  # hard DTW: 3 cells x 2
    6.0
    """
    out_dtype = x.dtype
    x, y, xl, yl, band = _prepare(x, y, gamma, x_lengths, y_lengths, band, dtype)
    cost = pairwise_sq_dist(x, y)
    return _SoftDTW.apply(cost, float(gamma), xl, yl, band).to(out_dtype)


def soft_dtw_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma: float = 0.1,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    band: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Soft-DTW divergence ``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2``.

    Zero on identical sequences and symmetric, unlike :func:`soft_dtw` itself
    (whose value on ``(x, x)`` is not zero and often negative). Arguments as in
    :func:`soft_dtw`; the band, when given, applies to all three terms. The
    three terms run as one batch of ``3 * batch`` pairs.

    Returns
    -------
    torch.Tensor
        ``[batch]``, one value per pair.

    Example
    -------
    >>> x = torch.randn(2, 5, 3)
    >>> soft_dtw_divergence(x, x).abs().max().item() < 1e-4
    True
    """
    x, y, xl, yl, band = _prepare(x, y, gamma, x_lengths, y_lengths, band, None)
    B, T1, T2 = x.shape[0], x.shape[1], y.shape[1]
    # The three terms as one batch of 3B pairs padded to T = max(T1, T2): one
    # wavefront instead of three (a third of the per-diagonal calls).
    T = max(T1, T2)
    xp = F.pad(x, (0, 0, 0, T - T1))
    yp = F.pad(y, (0, 0, 0, T - T2))
    values = soft_dtw(
        torch.cat([xp, xp, yp]),
        torch.cat([yp, xp, yp]),
        gamma,
        torch.cat([xl, xl, yl]),
        torch.cat([yl, xl, yl]),
        band=band,
        dtype=dtype,
    )
    xy, xx, yy = values.split(B)
    return xy - 0.5 * (xx + yy)


def contrastive_idm(
    z: torch.Tensor,
    margin: float,
    sigma: int = 0,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """LASER's temporal regulariser: contrastive inverse difference moment.

    For one utterance of ``n`` valid frames, with ``d_ij = ||z_i - z_j||_2``,
    ``w_ij = (i - j)^2 + 1`` and ``y_ij = [|i - j| > sigma]``::

        IDM = 1/n^2 sum_ij  y_ij * w_ij * max(0, margin - d_ij)
                          + (1 - y_ij) * d_ij / w_ij

    Frames far apart in time (beyond ``sigma``) are pushed at least ``margin``
    apart, more strongly the further apart they are; frames within ``sigma``
    are pulled together. It keeps the representation from collapsing to one
    point, which the soft-DTW term alone would allow. Computed per utterance on
    its valid frames (the ``1/n^2`` is each utterance's own), never over the
    padded batch.

    Arguments
    ---------
    z : torch.Tensor
        ``[batch, frame, feature]``.
    margin : float
        ``lambda``, the distance beyond which distant frames stop being pushed.
    sigma : int
        Temporal window (frames) of the "close" pairs; LASER uses 0.
    lengths : torch.Tensor, optional
        ``[batch]`` valid frames (default: all).

    Returns
    -------
    torch.Tensor
        ``[batch]``, one value per utterance.

    Example
    -------
    >>> z = torch.tensor([[[0.0], [0.0]]])  # two identical frames, sigma 0
    >>> contrastive_idm(z, margin=1.0).item()  # 2 ordered pairs * 2 * (1 - 0) / 4
    1.0
    """
    if z.dim() != 3:
        raise ValueError(
            f"contrastive_idm expects z [batch, frame, feature], got {tuple(z.shape)}"
        )
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 frames, got {sigma}")
    B, T, _ = z.shape
    lengths = _check_lengths(lengths, B, T, "lengths", z.device)
    idx = torch.arange(T, device=z.device)
    gap = (idx.view(T, 1) - idx.view(1, T)).abs()
    same = gap == 0
    sq = pairwise_sq_dist(z, z)
    # sqrt has an infinite slope at 0: zero distances (the diagonal, repeated
    # frames) stay out of it and get a zero (sub)gradient.
    positive = (sq > 1e-12) & ~same
    dist = torch.where(positive, torch.sqrt(torch.where(positive, sq, 1.0)), 0.0)
    w = (gap.to(z.dtype) ** 2) + 1.0
    far = gap > sigma
    terms = torch.where(far, w * torch.relu(margin - dist), dist / w)
    valid = idx.view(1, T) < lengths.view(B, 1)
    pair_valid = valid.unsqueeze(2) & valid.unsqueeze(1)
    terms = torch.where(pair_valid, terms, 0.0)
    n = lengths.to(z.dtype)
    return terms.sum((1, 2)) / (n * n)
