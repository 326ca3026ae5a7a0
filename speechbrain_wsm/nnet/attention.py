"""Self-attention token mixers with the package's mixer interface.

* :class:`MHSA` wraps SpeechBrain's ``MultiheadAttention`` (the ``mhsa`` mixer
  of the encoders, what SpeechBrain recipes call ``regularMHA``);
* :class:`RelPosMHSA` wraps SpeechBrain's ``RelPosMHAXL``, Transformer-XL
  relative positional attention, the attention of SpeechBrain's Conformer
  recipes (``relpos_mhsa``, the default attention of the encoder fragments:
  it needs no positional encoding of the input);
* :class:`SDPAttention` calls ``torch.nn.functional.scaled_dot_product_attention``
  directly, which picks flash / memory-efficient kernels on GPU (``sdpa``).

Both take ``forward(x, src_key_padding_mask=None)`` with ``x`` ``[batch, frame,
feature]`` and a bool mask ``[batch, frame]``, True = padding. A row that is all
padding attends to every frame instead of none, so its (meaningless) output
stays finite rather than NaN; valid rows are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.nnet.attention import MultiheadAttention, RelPosEncXL, RelPosMHAXL
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.nnet.common import valid_frames

__all__ = ["MHSA", "RelPosMHSA", "SDPAttention"]


def _safe_padding(mask):
    """Drop the padding mask of rows that are entirely padding (no 0/0 softmax)."""
    if mask is None:
        return None
    return mask & ~mask.all(dim=1, keepdim=True)


def _causal_mask(T: int, device) -> torch.Tensor:
    """``[T, T]`` bool, True where a query may NOT look (the future)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(1)


class MHSA(nn.Module):
    """Multi-head self-attention from SpeechBrain, behind the mixer interface.

    Arguments
    ---------
    d_model : int
        Feature size, divisible by ``nhead``.
    nhead : int
        Attention heads.
    dropout : float
        Dropout on the attention weights.
    causal : bool
        Frames attend only to themselves and the past.

    Example
    -------
    >>> att = MHSA(16, nhead=4)
    >>> att(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    #: Whether a layer around it compiles once for every length. Not in
    #: torch 2.11: Inductor's backward of a Conformer layer with SpeechBrain's
    #: attention guards on the number of frames (exactly, for RelPosMHAXL;
    #: an upper bound, for MultiheadAttention), so each new length compiles
    #: again (:meth:`~speechbrain_wsm.nnet.encoders.MixerEncoder.compile_layers`).
    compiles_for_every_length = False

    def __init__(
        self, d_model: int, nhead: int = 1, dropout: float = 0.0, causal=False
    ):
        super().__init__()
        self.causal = causal
        self.attention = MultiheadAttention(
            nhead=nhead, d_model=d_model, dropout=dropout
        )

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        valid_frames(x, src_key_padding_mask)
        attn_mask = _causal_mask(x.shape[1], x.device) if self.causal else None
        out = self.attention(
            x,
            x,
            x,
            key_padding_mask=_safe_padding(src_key_padding_mask),
            attn_mask=attn_mask,
            return_attn_weights=False,
            **self.position_arguments(x),
        )
        return out[0] if isinstance(out, tuple) else out

    def position_arguments(self, x: torch.Tensor) -> dict:
        """Extra arguments of the attention call (none: absolute positions)."""
        return {}


class RelPosMHSA(MHSA):
    """Relative positional multi-head self-attention (SpeechBrain's ``RelPosMHAXL``).

    Transformer-XL attention: scores add a content term and a term of the
    query against sinusoidal embeddings of the relative distance, with
    learned biases, so the layer knows token order without any positional
    encoding of the input. This is the attention of SpeechBrain's Conformer
    recipes (``attention_type: RelPosMHAXL``) and the baseline the
    SummaryMixing papers compare against. The relative embeddings
    (``RelPosEncXL``) have no parameters and are made for each input length.
    The arguments are those of :class:`MHSA`.

    Example
    -------
    >>> RelPosMHSA(16, nhead=4)(torch.randn(1, 6, 16)).shape
    torch.Size([1, 6, 16])
    """

    def __init__(
        self, d_model: int, nhead: int = 1, dropout: float = 0.0, causal=False
    ):
        if d_model % nhead:
            raise UserValueError(
                f"d_model={d_model} must be divisible by nhead={nhead}"
            )
        nn.Module.__init__(self)
        self.causal = causal
        self.pos_enc = RelPosEncXL(d_model)
        self.attention = RelPosMHAXL(
            d_model, nhead, dropout=dropout, mask_pos_future=causal
        )

    def position_arguments(self, x: torch.Tensor) -> dict:
        """Sinusoidal embeddings of every relative distance, ``[1, 2T - 1, D]``."""
        return {"pos_embs": self.pos_enc(x).to(x.dtype)}


class SDPAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    Without a padding mask the fused kernels run (flash attention on a recent
    GPU); with one, the mask is passed as a boolean ``attn_mask``.

    Arguments
    ---------
    d_model, nhead, dropout, causal
        As :class:`MHSA`.

    Example
    -------
    >>> att = SDPAttention(16, nhead=4, causal=True)
    >>> x = torch.randn(1, 6, 16)
    >>> y = att(x)
    >>> torch.allclose(y[:, :3], att(x[:, :3]), atol=1e-6)
    True
    """

    def __init__(
        self, d_model: int, nhead: int = 1, dropout: float = 0.0, causal=False
    ):
        super().__init__()
        if d_model % nhead:
            raise UserValueError(
                f"d_model={d_model} must be divisible by nhead={nhead}"
            )
        self.nhead, self.dropout, self.causal = nhead, dropout, causal
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor):
        """Queries, keys and values of ``x`` ``[batch, frame, d_model]``, each
        ``[batch, head, frame, head_dim]``."""
        B, T, D = x.shape
        return (
            self.in_proj(x)
            .view(B, T, 3, self.nhead, D // self.nhead)
            .permute(2, 0, 3, 1, 4)
        )

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        """The output projection of ``y`` ``[batch, head, frame, head_dim]``."""
        B, H, T, dh = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(B, T, H * dh))

    def forward(self, x: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        valid_frames(x, src_key_padding_mask)
        T = x.shape[1]
        q, k, v = self.split_heads(x)
        mask = _safe_padding(src_key_padding_mask)
        attn_mask, is_causal = None, self.causal
        if mask is not None:
            attn_mask = ~mask[:, None, None, :]  # True = may attend
            if self.causal:
                attn_mask = attn_mask & ~_causal_mask(T, x.device)
                is_causal = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        return self.merge_heads(y)
