"""Hierarchical feature fusion (HFF) with adapters, and the frozen-encoder readers it is compared with.

**Reconstruction, not from the paper.** Huo et al., "Resource-efficient
transfer learning from speech foundation model using hierarchical feature
fusion" (ICASSP 2023, arXiv 2211.02712) is known here by its abstract only:
fusing the features of several encoder layers beats other parameter-efficient
methods, and with adapters in every layer matches full fine-tuning with 97 %
fewer trainable encoder parameters and 53 % faster training. The fusion
operator, the taps and every setting below are this project's design:

* **HFF** (:class:`HierarchicalFeatureFusion`): taps on K hidden states
  ``l_1 < ... < l_K`` of the encoder, fused bottom-up,
  ``f_k = Block_k(f_{k-1} + P_k LN(h_{l_k}))`` with ``f_0 = 0``, ``P_k`` a
  linear projection to the fusion width and ``Block_k`` a small residual
  feed-forward block (``block="ffn"``) or one Transformer layer with any
  registered mixer (``mhsa``, ``wsm`` ...); ``f_K`` feeds the CTC head. The
  encoder runs under ``torch.no_grad()``: no graph, no stored activations,
  no backward pass through it at all (cf. Ladder Side-Tuning).
* **Adapters** (:func:`~speechbrain_wsm.nnet.adapters.add_layer_adapters`):
  ``x + W_up act(W_down LN(x))`` after every encoder layer, the encoder's own
  weights frozen; the backward pass crosses the layers' activations but makes
  no gradient or optimiser state for the encoder's weights. The front end
  (before the first adapter) still runs without autograd
  (:func:`~speechbrain_wsm.models.surgery.skip_frozen_activations`).
* **HFF + adapters**: both; the taps read the adapted hidden states.
* Baselines on the same frozen encoder: ``weighted_sum`` (the MP3S / SUPERB
  featuriser, :class:`~speechbrain_wsm.nnet.fusion.WeightedLayerSum` with
  LayerNorm, then a projection and ``num_blocks`` blocks) and ``last_layer``
  (the top hidden state, then the same); ``last_layer`` with adapters and
  ``num_blocks: 0`` is plain adapter fine-tuning.

Every ``ssl_source`` the other recipes accept works, through the one SSL
upstream (:func:`~speechbrain_wsm.models.upstream.load_upstream`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.lengths import lengths_to_padding_mask
from speechbrain_wsm.models.ssl_ctc import SSLCTCModel
from speechbrain_wsm.models.surgery import resolve_indices, skip_frozen_activations
from speechbrain_wsm.models.upstream import SSLUpstream, load_upstream
from speechbrain_wsm.models.upstream.hf import sync_hf_front_end_flags
from speechbrain_wsm.nnet.adapters import add_layer_adapters
from speechbrain_wsm.nnet.encoders import TransformerLayer
from speechbrain_wsm.nnet.fusion import WeightedLayerSum
from speechbrain_wsm.nnet.registry import MIXERS, build_mixer, check_choice

__all__ = [
    "FUSION_METHODS",
    "FeatureFusionCTC",
    "FusionBlock",
    "HierarchicalFeatureFusion",
    "build_fusion_model",
    "fusion_model",
    "resolve_taps",
]

#: What reads the encoder's hidden states.
FUSION_METHODS = ("hff", "weighted_sum", "last_layer")
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU}


def resolve_taps(taps: int | Sequence[int], num_layers: int) -> list[int]:
    """Hidden-state indices HFF reads, bottom first.

    Arguments
    ---------
    taps : int or sequence of int
        An int ``k``: every k-th layer counted down from the top, so the top
        layer is always tapped (12 layers, ``k = 3``: 3, 6, 9, 12). A list:
        hidden-state indices, 0 = the input of the first layer, ``l`` = the
        output of layer ``l``, negative ones counting from the top (-1 = the
        top layer).
    num_layers : int
        Layers of the encoder (it has ``num_layers + 1`` hidden states).

    Returns
    -------
    list of int
        Sorted, distinct indices in ``[0, num_layers]``.

    Example
    -------
    >>> resolve_taps(3, 12), resolve_taps(5, 12), resolve_taps([-1, 4], 12)
    ([3, 6, 9, 12], [2, 7, 12], [4, 12])
    >>> resolve_taps([13], 12)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: hidden state index 13 out of range: the encoder has 13 hidden states (-13 to 12)
    """
    if isinstance(taps, bool):
        raise UserValueError(f"taps must be an int or a list of ints, got {taps!r}")
    if isinstance(taps, int):
        if not 1 <= taps <= num_layers:
            raise UserValueError(
                f"taps = {taps}: tap every k-th layer with 1 <= k <= {num_layers} "
                "(the encoder's layers), or give a list of hidden-state indices"
            )
        return list(range(num_layers, 0, -taps))[::-1]
    return resolve_indices(taps, int(num_layers) + 1, "hidden state")


class FusionBlock(nn.Module):
    """One small trainable block of the fusion: residual FFN or a Transformer layer.

    Arguments
    ---------
    d_model : int
        Fusion width.
    block : str
        ``ffn``: ``x + W2 act(W1 LN(x))`` (frame by frame, padding cannot
        leak); or a registered mixer name (``mhsa``, ``wsm``, ``sm`` ...):
        one pre-LayerNorm Transformer layer with that mixer, which honours the
        padding mask.
    d_ffn : int
        Feed-forward width.
    dropout : float
        Dropout of the block.
    nhead : int
        Heads of the mixer (mixer blocks only).
    activation : str
        ``gelu``, ``relu`` or ``swish``.
    mixer_kwargs : dict, optional
        More mixer arguments (``window_size`` ...).

    Example
    -------
    >>> block = FusionBlock(16, "wsm", 32, mixer_kwargs={"window_size": 4})
    >>> block(torch.randn(2, 7, 16), torch.zeros(2, 7, dtype=torch.bool)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(
        self,
        d_model: int,
        block: str = "ffn",
        d_ffn: int = 1024,
        dropout: float = 0.1,
        nhead: int = 1,
        activation: str = "gelu",
        mixer_kwargs: dict | None = None,
    ):
        super().__init__()
        check_choice(activation, _ACTIVATIONS, "activation")
        check_choice(block, ("ffn", *MIXERS), "fusion block")
        self.kind = block
        if block == "ffn":
            self.net = nn.Sequential(
                nn.LayerNorm(d_model),
                nn.Linear(d_model, d_ffn),
                _ACTIVATIONS[activation](),
                nn.Dropout(dropout),
                nn.Linear(d_ffn, d_model),
                nn.Dropout(dropout),
            )
        else:
            mixer = build_mixer(
                block, d_model, nhead=nhead, dropout=dropout, **(mixer_kwargs or {})
            )
            self.net = TransformerLayer(
                mixer, d_model, d_ffn, dropout=dropout, activation=activation
            )

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """``x`` ``[batch, frame, d_model]``, mask ``[batch, frame]`` (True = padding)."""
        if self.kind == "ffn":
            return x + self.net(x)
        return self.net(x, padding_mask)


class HierarchicalFeatureFusion(nn.Module):
    """``f_k = Block_k(f_{k-1} + P_k LN(h_{l_k}))``, bottom-up over K taps (reconstruction).

    Reconstruction, not from the paper (see the module docstring).

    Arguments
    ---------
    taps : sequence of int
        Hidden-state indices read, bottom first (:func:`resolve_taps`).
    d_in : int
        Feature size of the encoder's hidden states.
    d_model : int
        Fusion width.
    **block_kwargs
        :class:`FusionBlock`'s other arguments (``block``, ``d_ffn``,
        ``dropout``, ``nhead``, ``activation``, ``mixer_kwargs``), the same
        for every tap's block.

    Example
    -------
    >>> hff = HierarchicalFeatureFusion([1, 3], d_in=8, d_model=16, d_ffn=32)
    >>> states = [torch.randn(2, 5, 8) for _ in range(4)]
    >>> hff(states).shape
    torch.Size([2, 5, 16])
    """

    def __init__(
        self, taps: Sequence[int], d_in: int, d_model: int = 256, **block_kwargs
    ):
        super().__init__()
        self.taps = [int(t) for t in taps]
        if not self.taps or sorted(set(self.taps)) != self.taps:
            raise UserValueError(
                f"taps must be distinct and ascending, got {list(taps)}"
            )
        self.norms = nn.ModuleList(nn.LayerNorm(d_in) for _ in self.taps)
        self.projections = nn.ModuleList(nn.Linear(d_in, d_model) for _ in self.taps)
        self.blocks = nn.ModuleList(
            FusionBlock(d_model, **block_kwargs) for _ in self.taps
        )

    def forward(
        self,
        hidden_states: Sequence[torch.Tensor],
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fuse the tapped states.

        Arguments
        ---------
        hidden_states : sequence of torch.Tensor
            Every hidden state of the encoder, ``[batch, frame, d_in]`` each.
        padding_mask : torch.Tensor, optional
            ``[batch, frame]`` bool, True = padding.

        Returns
        -------
        torch.Tensor
            ``f_K``, ``[batch, frame, d_model]``.
        """
        if self.taps[-1] >= len(hidden_states):
            raise ValueError(
                f"tap {self.taps[-1]} needs {self.taps[-1] + 1} hidden states, got "
                f"{len(hidden_states)}"
            )
        fused = None
        for tap, norm, proj, block in zip(
            self.taps, self.norms, self.projections, self.blocks, strict=True
        ):
            x = proj(norm(hidden_states[tap]))
            fused = block(x if fused is None else fused + x, padding_mask)
        return fused


class FeatureFusionCTC(SSLCTCModel):
    """An SSL upstream read by HFF, a weighted sum or its last layer, plus a CTC head.

    Reconstruction, not from the paper (see the module docstring). Called
    as every :class:`~speechbrain_wsm.models.ssl_ctc.SSLCTCModel`:
    ``model(wav, wav_lens) -> (log_probs, out_lens)``.

    Arguments
    ---------
    upstream : SSLUpstream
        The pretrained encoder. Without adapters it should be frozen (then it
        runs without autograd); with adapters its own weights are frozen and
        the adapters train.
    vocab_size : int
        CTC output units, blank at 0.
    method : str
        ``hff``, ``weighted_sum`` or ``last_layer``.
    taps : int or sequence of int
        HFF: see :func:`resolve_taps`.
    d_model : int
        Width of the fusion / head blocks.
    num_blocks : int
        ``weighted_sum`` / ``last_layer``: blocks after the projection (0: a
        linear CTC head on the projected features). HFF has one block per tap.
    head_dropout : float
        Dropout before the CTC head (a keyword argument).
    **block_kwargs
        :class:`FusionBlock`'s other arguments (``block``, ``d_ffn``,
        ``dropout``, ``nhead``, ``activation``, ``mixer_kwargs``), the same
        for every block; a name it does not take is an error.

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Encoder
    >>> up = SSLUpstream(Wav2Vec2Encoder.small(), frozen=True)
    >>> model = FeatureFusionCTC(up, 5, "hff", taps=1, d_model=8, d_ffn=16)
    >>> model.taps
    [1, 2]
    >>> log_probs, out_lens = model(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> log_probs.shape, (out_lens * log_probs.shape[1]).round().tolist()
    (torch.Size([2, 21, 5]), [21.0, 9.0])
    """

    def __init__(
        self,
        upstream: SSLUpstream,
        vocab_size: int,
        method: str = "hff",
        taps: int | Sequence[int] = 3,
        d_model: int = 256,
        num_blocks: int = 2,
        *,
        head_dropout: float = 0.1,
        **block_kwargs,
    ):
        super().__init__()
        check_choice(method, FUSION_METHODS, "fusion method")
        # Checked here: with num_blocks 0 no FusionBlock is built to refuse them.
        options = list(inspect.signature(FusionBlock).parameters)[1:]
        unknown = sorted(set(block_kwargs) - set(options))
        if unknown:
            raise TypeError(
                f"FeatureFusionCTC got unknown arguments {unknown}; its block "
                f"options are FusionBlock's: {', '.join(options)}"
            )
        if int(num_blocks) < 0:
            raise UserValueError(f"num_blocks must be >= 0, got {num_blocks}")
        self.upstream = upstream
        self.method = method
        num_layers = upstream.num_hidden_states - 1
        d_in = upstream.hidden_size
        self.taps = resolve_taps(taps, num_layers) if method == "hff" else [num_layers]
        if method == "hff":
            self.reader = HierarchicalFeatureFusion(
                self.taps, d_in, d_model, **block_kwargs
            )
            self.blocks = nn.ModuleList()
        else:
            self.reader = nn.ModuleDict({"projection": nn.Linear(d_in, d_model)})
            if method == "weighted_sum":
                self.reader["weights"] = WeightedLayerSum(num_layers + 1, True)
            else:
                self.reader["norm"] = nn.LayerNorm(d_in)
            self.blocks = nn.ModuleList(
                FusionBlock(d_model, **block_kwargs) for _ in range(int(num_blocks))
            )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(d_model, vocab_size)

    def features(self, wavs: torch.Tensor, samples: torch.Tensor | None = None):
        """``(features [batch, frame, d_model], frame_lengths [batch])`` before the head."""
        states, frames = self.upstream(wavs, samples)
        pad = lengths_to_padding_mask(frames, states[0].shape[1])
        if self.method == "hff":
            x = self.reader(states, pad)
        else:
            if self.method == "weighted_sum":
                h = self.reader["weights"](states)
            else:
                h = self.reader["norm"](states[-1])
            x = self.reader["projection"](h)
        for block in self.blocks:
            x = block(x, pad)
        return self.norm(x), frames

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The pretrained encoder's own parameters (adapters excluded)."""
        return [
            p for n, p in self.upstream.named_parameters() if ".adapter." not in f".{n}"
        ]


def fusion_model(
    ssl: nn.Module | SSLUpstream,
    vocab_size: int,
    method: str = "hff",
    adapters: bool = False,
    adapter_dim: int = 64,
    adapter_dropout: float = 0.0,
    **kwargs,
) -> FeatureFusionCTC:
    """:class:`FeatureFusionCTC` on a loaded SSL model, frozen, with or without adapters.

    Arguments
    ---------
    ssl : torch.nn.Module or SSLUpstream
        A pretrained model (a Hugging Face model, this project's encoder) or
        an upstream made of one.
    vocab_size : int
        CTC output units.
    method : str
        See :class:`FeatureFusionCTC`.
    adapters : bool
        Put a bottleneck adapter after every encoder layer and train those
        (the encoder's weights stay frozen). Without, the whole upstream is
        frozen and runs without autograd.
    adapter_dim, adapter_dropout
        Bottleneck width and dropout of the adapters.
    **kwargs
        The rest of :class:`FeatureFusionCTC`'s arguments.

    Returns
    -------
    FeatureFusionCTC
        Only the reader, the blocks, the head (and the adapters) trainable.
    """
    upstream = ssl if isinstance(ssl, SSLUpstream) else SSLUpstream(ssl)
    if adapters:
        upstream.frozen = False
        upstream.requires_grad_(False)
        add_layer_adapters(upstream.model, adapter_dim, dropout=adapter_dropout)
        sync_hf_front_end_flags(upstream)  # the frozen HF front end: no graph
        upstream.train()
    else:
        upstream.freeze()
    model = FeatureFusionCTC(upstream, vocab_size, method, **kwargs)
    # With adapters, the front end (before the first adapter) runs without
    # autograd; without them, the frozen upstream does anyway.
    skip_frozen_activations(model)
    return model


def build_fusion_model(
    ssl_source,
    vocab_size: int,
    method: str = "hff",
    adapters: bool = False,
    adapter_dim: int = 64,
    adapter_dropout: float = 0.0,
    normalize_wav: bool | None = None,
    attention_mask: bool | None = None,
    hf_config_overrides: dict | None = None,
    **kwargs,
) -> FeatureFusionCTC:
    """Load ``ssl_source`` through the one SSL upstream and build the fusion model.

    The upstream is loaded frozen without adapters; with them, it is loaded
    trainable and :func:`fusion_model` freezes all but the adapters.

    Arguments
    ---------
    ssl_source, normalize_wav, attention_mask, hf_config_overrides
        The upstream's options, documented by
        :func:`~speechbrain_wsm.models.upstream.load_upstream` (None: as the
        checkpoint was pretrained).
    vocab_size, method, adapters, adapter_dim, adapter_dropout
        See :func:`fusion_model`.
    **kwargs
        :class:`FeatureFusionCTC`'s arguments (``taps``, ``d_model``,
        ``num_blocks``, ``block`` ...).

    Returns
    -------
    FeatureFusionCTC
    """
    upstream = load_upstream(
        ssl_source,
        frozen=not adapters,
        normalize_wav=normalize_wav,
        attention_mask=attention_mask,
        hf_config_overrides=dict(hf_config_overrides or {}),
    )
    return fusion_model(
        upstream, vocab_size, method, adapters, adapter_dim, adapter_dropout, **kwargs
    )
