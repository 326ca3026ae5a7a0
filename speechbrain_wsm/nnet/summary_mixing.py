"""SummaryMixing (SM) and Windowed SummaryMixing (WSM) token mixers.

Both replace self-attention in an encoder block by averages, so their cost is
linear in the number of frames T:

* **SM** (Parcollet et al., 2023/2024): a local branch ``f(x_t)``, a summary
  branch ``s(x_t)`` averaged over the valid frames of the utterance, and a
  combiner ``c([f(x_t); mean_t s(x_t)])``.
* **WSM** (Menon et al., 2026): SM plus a local summary, the mean of ``s`` over a
  window of frames around ``t``, fed to the combiner as a third input. In causal
  mode the window ends at ``t`` and the global summary becomes a running mean,
  so output ``t`` depends on frames ``<= t`` only and the layer can stream.

Conventions shared by every mixer of this package:

* ``forward(x, src_key_padding_mask=None)`` with ``x`` of shape
  ``[batch, frame, feature]`` and a boolean mask ``[batch, frame]`` where
  ``True`` marks padding (the PyTorch / SpeechBrain convention);
* padded frames never change the output of a valid frame: every mean divides by
  the number of *valid* frames it covers, and padded values are removed with
  ``masked_fill`` (never multiplied by zero, so a NaN in padding cannot leak);
* sums are accumulated in float32 whatever the input precision, and an empty
  average (an all-padding row, a window of padding) divides by one, not zero;
* window sums come from prefix sums, so time and memory are ``O(T * D)``: no
  ``T x T`` or ``T x window`` tensor is ever built.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from speechbrain_wsm.nnet import frame_sums
from speechbrain_wsm.nnet.common import make_activation, valid_frames
from speechbrain_wsm.nnet.lean_mixing import lean_forward

__all__ = ["GroupedMLP", "SummaryMixing", "WindowedSummaryMixing"]

MODES = ("full", "lite", "fast")


class GroupedMLP(nn.Module):
    """Grouped (block-diagonal) linear layers, each followed by the activation.

    The features are cut into ``groups`` equal slices and slice ``g`` goes
    through its own stack of linear layers; the outputs are concatenated. This
    is what "heads" mean in SummaryMixing: no attention, independent
    projections of feature groups. ``groups=1`` is an ordinary MLP.

    The whole stack runs in a group-major ``[groups, frames, features]``
    layout with the bias folded into each batched matrix product, so the only
    layout copy is the final one back to ``[..., out]``.

    Arguments
    ---------
    in_features : int
        Input size, divisible by ``groups``.
    dims : list of int
        Output size of each layer, each divisible by ``groups``.
    groups : int
        Number of independent feature groups.
    activation : str or type
        Activation after every layer (the last one included).

    Example
    -------
    >>> mlp = GroupedMLP(8, [8, 6], groups=2)
    >>> mlp(torch.randn(3, 5, 8)).shape
    torch.Size([3, 5, 6])
    >>> mlp.weights[0].shape  # [groups, in / groups, out / groups]
    torch.Size([2, 4, 4])
    """

    def __init__(self, in_features: int, dims, groups: int = 1, activation="gelu"):
        super().__init__()
        sizes = [in_features] + list(dims)
        if groups < 1 or any(d % groups for d in sizes):
            raise ValueError(
                f"GroupedMLP: every size {sizes} must be divisible by groups={groups}"
            )
        self.groups, self.in_features, self.out_features = (
            groups,
            in_features,
            sizes[-1],
        )
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(d_in // groups)
            w = torch.empty(groups, d_in // groups, d_out // groups).uniform_(
                -bound, bound
            )
            b = torch.empty(groups, 1, d_out // groups).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` ``[..., in_features]`` to ``[..., out_features]``."""
        lead = x.shape[:-1]
        h = x.reshape(-1, self.groups, self.in_features // self.groups).transpose(0, 1)
        for w, b in zip(self.weights, self.biases, strict=True):
            h = self.activation(torch.baddbmm(b, h, w))
        return h.transpose(0, 1).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        dims = [self.in_features] + [w.shape[0] * w.shape[2] for w in self.weights]
        return f"sizes={dims}, groups={self.groups}"


def _masked_fp32(u: torch.Tensor, valid):
    """Summary vectors in float32 with padding removed, and the float validity
    ``[B, T]`` (None when there is no padding: counts are then known)."""
    u = u.float()
    if valid is None:
        return u, None
    return u.masked_fill(~valid.unsqueeze(-1), 0.0), valid.float()


class _WindowSum(torch.autograd.Function):
    """Box-filter sums along frames whose backward is the mirrored box filter.

    ``total[t] = sum(u[t - left : t + right + 1])``, so
    ``grad_u[s] = sum(grad[s - right : s + left + 1])``: the same operation
    with ``left`` and ``right`` swapped. Nothing is saved for backward.
    """

    @staticmethod
    def forward(ctx, u, left: int, right: int):
        ctx.left, ctx.right = left, right
        return frame_sums.box_sums(u, left, right)

    @staticmethod
    def backward(ctx, grad):
        return frame_sums.box_sums(grad, ctx.right, ctx.left), None, None


def _windowed_mean(u: torch.Tensor, n, left: int, right: int) -> torch.Tensor:
    """Mean of ``u`` over frames ``[t - left, t + right]`` clipped to the sequence.

    ``u`` ``[B, T, S]`` float32 with padding zeroed; ``n`` ``[B, T]`` float
    validity, or None when every frame is valid. The denominator counts valid
    frames only, and is at least one.
    """
    total = _WindowSum.apply(u, left, right)
    if n is None:
        t = torch.arange(u.shape[1], device=u.device)
        count = (t + right).clamp(max=u.shape[1] - 1) - (t - left).clamp(min=0) + 1
        count = count.to(u.dtype)[None, :, None]
    else:
        count = frame_sums.box_sums(n, left, right).clamp(min=1.0).unsqueeze(-1)
    return total / count


class SummaryMixing(nn.Module):
    """SummaryMixing: local projection, utterance-mean summary and a combiner.

    For each frame ``t``: ``y_t = c(dropout([f(x_t); mean_{t'} s(x_t')]))``,
    where ``f`` and ``s`` are MLPs of grouped linear layers (``nhead`` groups,
    an activation after every layer) and ``c`` is a linear layer with an
    activation. The mean runs over the valid frames only. With ``causal=True``
    the mean is a running mean over frames ``<= t``.

    Arguments
    ---------
    d_model : int
        Input and output size ``D``.
    nhead : int
        Number of groups of the block-diagonal projections of ``f`` and ``s``.
    local_proj_hid_dims : list of int, optional
        Hidden sizes of ``f`` (default ``[d_model]``).
    local_proj_out_dim : int, optional
        Output size of ``f`` (default ``d_model``).
    summary_hid_dims : list of int, optional
        Hidden sizes of ``s`` (default ``[d_model]``).
    summary_out_dim : int, optional
        Output size of ``s`` (default ``d_model``).
    mode : str
        ``full`` (the cell above), ``lite`` (no local branch: the summaries are
        the output, through the combiner when there is more than one) or
        ``fast`` (one dense projection ``D -> local + summary`` split in two
        halves, then the combiner).
    activation : str or type
        Activation of the projections and the combiner (default GELU).
    dropout : float
        Dropout on the combiner's input.
    layernorm : bool
        LayerNorm on each combiner input (local branch and summaries).
    causal : bool
        Running mean instead of the utterance mean: output ``t`` depends on
        frames ``<= t`` only, and :meth:`forward_streaming` is available.
    recompute : bool
        Keep only the input of the local and summary projections for the
        backward pass and run them again there, instead of keeping their
        activations: less peak memory in training for one more forward pass
        of the projections (``python -m speechbrain_wsm.bench.layers
        --recompute wsm_w32`` measures both: for one WSM layer at 120 s on CPU,
        25 % less peak memory for 17 % more time). Same outputs and gradients.
    lean : bool
        In training (gradients on), run the layer as one autograd function
        with a hand-written backward (:mod:`speechbrain_wsm.nnet.lean_mixing`)
        that keeps the layer input, the projections' hidden pre-activations
        and the combiner's pre-activation, and recomputes the rest (activations,
        last block-diagonal projection layer, LayerNorms, means, window sums):
        four ``[frame, d_model]`` tensors per frame instead of ten (SM) or
        twelve (WSM), fewer than PyTorch's SDPA attention block keeps. Same
        outputs and gradients. Default on; ``recompute=True`` takes precedence.

    Example
    -------
    >>> sm = SummaryMixing(d_model=16, nhead=2)
    >>> x = torch.randn(2, 10, 16)
    >>> pad = torch.arange(10) >= torch.tensor([[10], [6]])  # 2nd has 6 frames
    >>> y = sm(x, src_key_padding_mask=pad)
    >>> y.shape
    torch.Size([2, 10, 16])
    >>> torch.allclose(y[1, :6], sm(x[1:, :6])[0], atol=1e-6)
    True
    """

    num_window_summaries = 0

    def __init__(
        self,
        d_model: int,
        nhead: int = 1,
        local_proj_hid_dims=None,
        local_proj_out_dim: int | None = None,
        summary_hid_dims=None,
        summary_out_dim: int | None = None,
        mode: str = "full",
        activation="gelu",
        dropout: float = 0.0,
        layernorm: bool = True,
        causal: bool = False,
        recompute: bool = False,
        lean: bool = True,
    ):
        super().__init__()
        self.recompute, self.lean = recompute, lean
        if mode not in MODES:
            raise ValueError(
                f"unknown SummaryMixing mode {mode!r}; choose from {MODES}"
            )
        self.d_model, self.nhead, self.mode, self.causal = d_model, nhead, mode, causal
        local_hid = (
            [d_model] if local_proj_hid_dims is None else list(local_proj_hid_dims)
        )
        summary_hid = [d_model] if summary_hid_dims is None else list(summary_hid_dims)
        local_out = local_proj_out_dim or d_model
        summary_out = summary_out_dim or d_model
        self.summary_out = summary_out
        n_summaries = 1 + self.num_window_summaries

        self.local_proj = self.summary_proj = self.shared_proj = None
        if mode == "fast":
            # One dense projection for both branches; grouping would not split
            # cleanly into a local and a summary half, so it is not grouped.
            self.shared_proj = nn.Sequential(
                nn.Linear(d_model, local_out + summary_out), make_activation(activation)
            )
            self.local_out = local_out
        else:
            self.summary_proj = GroupedMLP(
                d_model, summary_hid + [summary_out], nhead, activation
            )
            if mode == "full":
                self.local_proj = GroupedMLP(
                    d_model, local_hid + [local_out], nhead, activation
                )
        has_local = mode != "lite"
        in_dims = ([local_out] if has_local else []) + [summary_out] * n_summaries
        self.norms = nn.ModuleList(
            [nn.LayerNorm(d) if layernorm else nn.Identity() for d in in_dims]
        )
        self.dropout = nn.Dropout(dropout)
        self.in_dims = in_dims
        self.in_ends = [sum(in_dims[: i + 1]) for i in range(len(in_dims))]
        if len(in_dims) == 1:  # SM lite: the summary is the output
            if summary_out != d_model:
                raise ValueError(
                    f"mode='lite' outputs the summary, so summary_out_dim "
                    f"({summary_out}) must equal d_model ({d_model})"
                )
            self.combiner = None
        else:
            self.combiner = nn.Linear(sum(in_dims), d_model)
            self.combiner_activation = make_activation(activation)

    # -- branches -------------------------------------------------------------
    def _branches(self, x: torch.Tensor):
        """Local features (or None) and summary features of every frame."""
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(self._project, x, use_reentrant=False)
        return self._project(x)

    def _project(self, x: torch.Tensor):
        if self.shared_proj is not None:
            h = self.shared_proj(x)
            return h[..., : self.local_out], h[..., self.local_out :]
        local = self.local_proj(x) if self.local_proj is not None else None
        return local, self.summary_proj(x)

    def _summaries(self, u: torch.Tensor, n: torch.Tensor) -> list[torch.Tensor]:
        """Summaries from float32 summary features ``u`` and validity ``n``."""
        T = u.shape[1]
        if self.causal:
            if n is None:
                count = torch.arange(1, T + 1, device=u.device, dtype=u.dtype)[:, None]
            else:
                count = n.cumsum(1).clamp(min=1.0).unsqueeze(-1)
            return [_WindowSum.apply(u, None, 0) / count]  # running sums
        count = T if n is None else n.sum(1).clamp(min=1.0)[:, None, None]
        return [u.sum(1, keepdim=True) / count]

    def _combine(self, local, summaries, dtype, T: int) -> torch.Tensor:
        """``c(dropout([norm(local); norm(summaries)...]))`` without the concat.

        The combiner is applied as a sum of one matrix product per input, which
        is the same linear map; an utterance-level summary (``[B, 1, S]``) is
        projected once per utterance instead of once per frame.
        """
        parts = [] if local is None else [local]
        parts += [s.to(dtype) for s in summaries]
        parts = [
            self.dropout(norm(p)) for norm, p in zip(self.norms, parts, strict=True)
        ]
        if self.combiner is None:  # lite SM: the (normalised) summary itself
            return parts[0].expand(parts[0].shape[0], T, -1)
        weight, ends = self.combiner.weight, self.in_ends
        terms = [
            F.linear(p, weight[:, end - dim : end])
            for p, dim, end in zip(parts, self.in_dims, ends, strict=True)
        ]
        per_utterance = self.combiner.bias
        out = None
        for term in terms:
            if term.shape[1] == 1 and T != 1:
                per_utterance = per_utterance + term  # [B, 1, D]
            else:
                out = term if out is None else out + term
        return self.combiner_activation(out + per_utterance)

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        """Mix ``x`` ``[batch, frame, d_model]``; the mask is ``[batch, frame]``, True = pad.

        Returns
        -------
        torch.Tensor
            ``[batch, frame, d_model]``.
        """
        valid = valid_frames(x, src_key_padding_mask)
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"expected feature size {self.d_model}, got {tuple(x.shape)}"
            )
        if self.lean and not self.recompute and torch.is_grad_enabled():
            y = lean_forward(self, x, valid)
            if y is not None:
                return y
        local, summ = self._branches(x)
        u, n = _masked_fp32(summ, valid)
        return self._combine(local, self._summaries(u, n), x.dtype, x.shape[1])

    # -- streaming ------------------------------------------------------------
    def init_state(self, batch_size: int, device=None) -> dict:
        """Empty stream state: running sum and count of the summary features."""
        return {
            "sum": torch.zeros(batch_size, self.summary_out, device=device),
            "count": torch.zeros(batch_size, device=device),
        }

    def forward_streaming(
        self, x_chunk: torch.Tensor, state=None, src_key_padding_mask=None
    ):
        """Process one chunk of a stream; needs ``causal=True``.

        Arguments
        ---------
        x_chunk : torch.Tensor
            The next ``[batch, chunk, d_model]`` frames.
        state : dict, optional
            The state returned by the previous call; ``None`` starts a stream.
        src_key_padding_mask : torch.Tensor, optional
            ``[batch, chunk]`` bool, True = padding (e.g. the end of a shorter
            stream in a batch); padded frames leave the state unchanged.

        Returns
        -------
        (torch.Tensor, dict)
            The ``[batch, chunk, d_model]`` output, equal to the matching frames
            of the full causal :meth:`forward`, and the new state, whose size
            does not depend on the stream length.
        """
        if not self.causal:
            raise ValueError("forward_streaming needs a causal mixer (causal=True)")
        valid = valid_frames(x_chunk, src_key_padding_mask)
        if state is None:
            state = self.init_state(x_chunk.shape[0], x_chunk.device)
        local, summ = self._branches(x_chunk)
        u, n = _masked_fp32(summ, valid)
        if n is None:
            n = u.new_ones(u.shape[:2])
        summaries, state = self._stream_summaries(u, n, state)
        return self._combine(local, summaries, x_chunk.dtype, x_chunk.shape[1]), state

    def _stream_summaries(self, u, n, state):
        run_sum = state["sum"].unsqueeze(1) + u.cumsum(1)
        run_count = state["count"].unsqueeze(1) + n.cumsum(1)
        summary = run_sum / run_count.clamp(min=1.0).unsqueeze(-1)
        new_state = {"sum": run_sum[:, -1], "count": run_count[:, -1]}
        return [summary], new_state

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, nhead={self.nhead}, causal={self.causal}"


class WindowedSummaryMixing(SummaryMixing):
    """Windowed SummaryMixing: SummaryMixing plus a local window summary.

    ``y_t = c(dropout([f(x_t); mean_{t' in W(t)} s(x_t'); mean_{t'} s(x_t')]))``
    where ``W(t)`` holds the ``window_size`` frames centred on ``t``
    (``(window_size - 1) // 2`` before, ``window_size // 2`` after) or, with
    ``causal=True``, the ``window_size`` frames ending at ``t``; then the global
    mean is a running mean too, and the layer streams with
    :meth:`forward_streaming` in ``O(window_size * D)`` state.

    Arguments
    ---------
    d_model : int
        Input and output size.
    nhead : int
        Groups of the block-diagonal projections.
    window_size : int
        Frames in the local window (at 20 ms frames, 32 is 0.64 s).
    causal : bool
        Window ending at ``t`` and running global mean.
    **kwargs
        Every other argument of :class:`SummaryMixing`.

    Example
    -------
    >>> wsm = WindowedSummaryMixing(16, nhead=2, window_size=5, causal=True)
    >>> x = torch.randn(1, 12, 16)
    >>> full = wsm(x)
    >>> y1, state = wsm.forward_streaming(x[:, :7])
    >>> y2, state = wsm.forward_streaming(x[:, 7:], state)
    >>> torch.allclose(torch.cat([y1, y2], 1), full, atol=1e-5)
    True
    """

    num_window_summaries = 1

    def __init__(self, d_model: int, nhead: int = 1, window_size: int = 32, **kwargs):
        if not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"window_size must be a positive int, got {window_size!r}")
        self.window_size = window_size
        super().__init__(d_model, nhead, **kwargs)
        if self.causal:
            self.left, self.right = window_size - 1, 0
        else:
            self.left, self.right = (window_size - 1) // 2, window_size // 2

    def _summaries(self, u, n):
        window = _windowed_mean(u, n, self.left, self.right)
        return [window] + super()._summaries(u, n)

    def init_state(self, batch_size: int, device=None) -> dict:
        state = super().init_state(batch_size, device)
        # The last window_size - 1 summary vectors and whether they were valid.
        state["tail_u"] = torch.zeros(
            batch_size, self.window_size - 1, self.summary_out, device=device
        )
        state["tail_n"] = torch.zeros(batch_size, self.window_size - 1, device=device)
        return state

    def _stream_summaries(self, u, n, state):
        (glob,), new_state = super()._stream_summaries(u, n, state)
        w, L = self.window_size, u.shape[1]
        ext_u = torch.cat([state["tail_u"], u], dim=1)
        ext_n = torch.cat([state["tail_n"], n], dim=1)
        su, sn = frame_sums.prefix_sums(ext_u), frame_sums.prefix_sums(ext_n)
        # chunk frame j sits at ext index j + w - 1; its window is ext[j : j + w]
        total = su[:, w : w + L] - su[:, :L]
        count = sn[:, w : w + L] - sn[:, :L]
        window = total / count.clamp(min=1.0).unsqueeze(-1)
        new_state["tail_u"] = ext_u[:, ext_u.shape[1] - (w - 1) :]
        new_state["tail_n"] = ext_n[:, ext_n.shape[1] - (w - 1) :]
        return [window, glob], new_state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window_size={self.window_size}"
