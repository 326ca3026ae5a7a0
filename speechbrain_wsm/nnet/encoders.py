"""Conformer, Branchformer and Transformer encoders with an injected token mixer.

The mixer (``mhsa``, ``sdpa``, ``sm``, ``wsm`` ... see
:mod:`speechbrain_wsm.nnet.registry`) is chosen by name, so a YAML file switches
between self-attention and SummaryMixing with one key. The blocks reuse
SpeechBrain's feed-forward and convolution modules; what this module adds is
padding discipline: the depthwise convolutions see zeros at padded frames, so
every layer, not just the mixer, gives a valid frame the same output whether
its utterance is alone or inside a padded batch.
"""

from __future__ import annotations

import logging
import math

import torch
from speechbrain.lobes.models.transformer.Conformer import ConvolutionModule
from speechbrain.nnet.attention import PositionalwiseFeedForward
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.nnet.common import activation_class, valid_frames
from speechbrain_wsm.nnet.lean_mixing import compile_backend
from speechbrain_wsm.nnet.registry import build_mixer, check_choice

logger = logging.getLogger(__name__)
#: Mixers that know token order only from a positional encoding of the input.
ABSOLUTE_POSITION_MIXERS = ("mhsa", "sdpa")

__all__ = [
    "ConformerLayer",
    "BranchformerLayer",
    "TransformerLayer",
    "MixerEncoder",
    "LAYERS",
]


def _depthwise_conv(channels: int, kernel_size: int, causal: bool) -> nn.Conv1d:
    if not causal and kernel_size % 2 == 0:
        raise UserValueError(
            f"a non-causal convolution needs an odd kernel_size, got {kernel_size}"
        )
    padding = kernel_size - 1 if causal else (kernel_size - 1) // 2
    return nn.Conv1d(channels, channels, kernel_size, padding=padding, groups=channels)


def _chomp(y: torch.Tensor, T: int) -> torch.Tensor:
    """Keep the first T frames (drops the look-ahead a causal conv pads on)."""
    return y[..., :T]


class MaskedConvolutionModule(ConvolutionModule):
    """SpeechBrain's Conformer convolution module, zeroing padded frames first.

    The pointwise bottleneck turns a padded (even zero) frame into a non-zero
    one, which the depthwise convolution would then spread into the valid
    frames at the edge; here padded frames are zeroed right before it.

    Example
    -------
    >>> conv = MaskedConvolutionModule(8, kernel_size=3)
    >>> conv(torch.randn(2, 5, 8), torch.zeros(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 5, 8])
    """

    def depthwise(self, b: torch.Tensor) -> torch.Tensor:
        """The depthwise convolution of ``b`` ``[batch, channel, frame]``,
        as many frames out as in."""
        return _chomp(self.conv(b), b.shape[-1])

    def forward(self, x, mask=None, dynchunktrain_config=None):
        """``x`` ``[batch, frame, feature]``, ``mask`` ``[batch, frame]`` True = pad."""
        out = self.bottleneck(self.layer_norm(x).transpose(1, 2))
        if mask is not None:
            out = out.masked_fill(mask.unsqueeze(1), 0.0)
        out = self.depthwise(out)
        out = self.after_conv(out.transpose(1, 2))
        if mask is not None:
            out = out.masked_fill(mask.unsqueeze(-1), 0.0)
        return out


class ConvGatingMLP(nn.Module):
    """The Branchformer's convolutional gating MLP (cgMLP), padding-safe.

    ``Linear(D -> d_ffn)``, activation, split in halves ``a, b``;
    ``b = DepthwiseConv(LayerNorm(b))`` with padded frames zeroed; ``a * b``;
    ``Linear(d_ffn / 2 -> D)``.
    """

    def __init__(
        self,
        d_model,
        d_ffn,
        kernel_size=31,
        dropout=0.0,
        causal=False,
        activation="gelu",
    ):
        super().__init__()
        if d_ffn % 2:
            raise UserValueError(f"Branchformer d_ffn must be even, got {d_ffn}")
        self.pre = nn.Linear(d_model, d_ffn)
        self.activation = activation_class(activation)()
        self.norm = nn.LayerNorm(d_ffn // 2)
        self.conv = _depthwise_conv(d_ffn // 2, kernel_size, causal)
        self.dropout = nn.Dropout(dropout)
        self.post = nn.Linear(d_ffn // 2, d_model)

    def forward(self, x, mask=None):
        a, b = self.activation(self.pre(x)).chunk(2, dim=-1)
        b = self.norm(b)
        if mask is not None:
            b = b.masked_fill(mask.unsqueeze(-1), 0.0)
        b = _chomp(self.conv(b.transpose(1, 2)), x.shape[1]).transpose(1, 2)
        return self.post(self.dropout(a * b))


def _ffn(d_model, d_ffn, dropout, activation) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(d_model),
        PositionalwiseFeedForward(
            d_ffn=d_ffn,
            input_size=d_model,
            dropout=dropout,
            activation=activation_class(activation),
        ),
        nn.Dropout(dropout),
    )


class ConformerLayer(nn.Module):
    """Macaron Conformer block: ½FFN, mixer, convolution, ½FFN, LayerNorm.

    Arguments
    ---------
    mixer : torch.nn.Module
        The token mixer (mixer interface).
    d_model, d_ffn : int
        Model and feed-forward sizes.
    kernel_size : int
        Depthwise convolution kernel.
    dropout : float
        Dropout after each sub-block.
    activation : str or type
        Activation of the feed-forward and convolution modules.
    causal : bool
        Causal convolution (the mixer's causality is set by the mixer).
    """

    def __init__(
        self,
        mixer,
        d_model,
        d_ffn,
        kernel_size=31,
        dropout=0.1,
        activation="swish",
        causal=False,
    ):
        super().__init__()
        self.mixer = mixer
        self.ffn1 = _ffn(d_model, d_ffn, dropout, activation)
        self.ffn2 = _ffn(d_model, d_ffn, dropout, activation)
        self.norm_mixer = nn.LayerNorm(d_model)
        if not causal and kernel_size % 2 == 0:
            raise UserValueError(
                f"a non-causal convolution needs an odd kernel_size, got {kernel_size}"
            )
        self.conv = MaskedConvolutionModule(
            d_model,
            kernel_size,
            activation=activation_class(activation),
            dropout=dropout,
            causal=causal,
        )
        self.norm_out = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, src_key_padding_mask=None):
        x = x + 0.5 * self.ffn1(x)
        x = x + self.drop(self.mixer(self.norm_mixer(x), src_key_padding_mask))
        x = x + self.conv(x, src_key_padding_mask)
        return self.norm_out(x + 0.5 * self.ffn2(x))


class TransformerLayer(nn.Module):
    """Pre-LayerNorm Transformer block: ``x + mixer(LN x)``, ``x + FFN(LN x)``."""

    def __init__(
        self,
        mixer,
        d_model,
        d_ffn,
        kernel_size=None,
        dropout=0.1,
        activation="gelu",
        causal=False,
    ):
        super().__init__()
        self.mixer = mixer
        self.norm_mixer = nn.LayerNorm(d_model)
        self.ffn = _ffn(d_model, d_ffn, dropout, activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, src_key_padding_mask=None):
        x = x + self.drop(self.mixer(self.norm_mixer(x), src_key_padding_mask))
        return x + self.ffn(x)


class BranchformerLayer(nn.Module):
    """Branchformer block: mixer branch and cgMLP branch in parallel, merged.

    ``x + Dropout(Linear([mixer(LN x); cgMLP(LN x)]))``; ``d_ffn`` is the cgMLP
    hidden size.
    """

    def __init__(
        self,
        mixer,
        d_model,
        d_ffn,
        kernel_size=31,
        dropout=0.1,
        activation="gelu",
        causal=False,
    ):
        super().__init__()
        self.mixer = mixer
        self.norm_mixer = nn.LayerNorm(d_model)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.cgmlp = ConvGatingMLP(
            d_model, d_ffn, kernel_size, dropout, causal, activation
        )
        self.merge = nn.Linear(2 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, src_key_padding_mask=None):
        m = self.drop(self.mixer(self.norm_mixer(x), src_key_padding_mask))
        c = self.drop(self.cgmlp(self.norm_mlp(x), src_key_padding_mask))
        return x + self.drop(self.merge(torch.cat([m, c], dim=-1)))


LAYERS = {
    "conformer": ConformerLayer,
    "branchformer": BranchformerLayer,
    "transformer": TransformerLayer,
}


def sinusoidal_positions(T: int, d_model: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed absolute sinusoidal positions ``[1, T, d_model]``, for any ``T``.

    Example
    -------
    >>> sinusoidal_positions(5, 8).shape
    torch.Size([1, 5, 8])
    """
    pos = torch.arange(T, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    pe = torch.zeros(T, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe.unsqueeze(0).to(dtype or torch.float32)


class MixerEncoder(nn.Module):
    """A stack of Conformer / Branchformer / Transformer layers with a chosen mixer.

    Arguments
    ---------
    num_layers : int
        Number of layers.
    d_model : int
        Feature size of the input, every layer and the output.
    nhead : int
        Heads of the mixer (attention heads, or SM projection groups).
    d_ffn : int
        Feed-forward size (cgMLP size for the Branchformer).
    mixer : str
        Registered mixer name: ``mhsa``, ``sdpa``, ``sm``, ``wsm``.
    arch : str
        ``conformer``, ``branchformer`` or ``transformer``.
    dropout : float
        Dropout of every sub-block.
    causal : bool
        Causal mixer and convolutions: frame ``t`` never sees frames ``> t``.
    kernel_size : int
        Depthwise convolution kernel (Conformer, Branchformer).
    activation : str or type
        Feed-forward / convolution activation.
    layerdrop : float
        Probability of skipping each layer in training (the skipped layer's
        hidden state repeats its input, so the list keeps its length).
    positional_encoding : str
        ``none`` or ``sine`` (fixed absolute sinusoids added to the input;
        ``mhsa``/``sdpa`` attention needs them, ``relpos_mhsa`` has relative
        positions of its own, SM/WSM and the convolutions need none).
    mixer_kwargs : dict, optional
        Extra arguments of the mixer (``window_size``, ``mode`` ...).

    Example
    -------
    >>> enc = MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="wsm",
    ...                    mixer_kwargs={"window_size": 4})
    >>> out, hidden = enc(torch.randn(3, 9, 16))
    >>> out.shape, len(hidden)
    (torch.Size([3, 9, 16]), 3)
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        nhead: int = 4,
        d_ffn: int = 1024,
        mixer: str = "mhsa",
        arch: str = "conformer",
        dropout: float = 0.1,
        causal: bool = False,
        kernel_size: int = 31,
        activation="swish",
        layerdrop: float = 0.0,
        positional_encoding: str = "none",
        mixer_kwargs: dict | None = None,
    ):
        super().__init__()
        check_choice(arch, LAYERS, "encoder arch")
        check_choice(positional_encoding, ("none", "sine"), "positional_encoding")
        self.d_model, self.arch, self.mixer_name = d_model, arch, mixer
        self.causal, self.layerdrop = causal, layerdrop
        self.positional_encoding = positional_encoding
        if mixer in ABSOLUTE_POSITION_MIXERS and positional_encoding == "none":
            logger.warning(
                "mixer %r with positional_encoding 'none': the attention sees "
                "token order only through the convolutions; use 'relpos_mhsa' "
                "or positional_encoding 'sine'",
                mixer,
            )
        mixer_kwargs = dict(mixer_kwargs or {})
        self.layers = nn.ModuleList(
            LAYERS[arch](
                self.make_mixer(mixer, d_model, nhead, dropout, causal, mixer_kwargs),
                d_model,
                d_ffn,
                kernel_size=kernel_size,
                dropout=dropout,
                activation=activation,
                causal=causal,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def compile_layers(self, **options) -> None:
        """Compile every layer in place: ``torch.compile(dynamic=True)``
        (``options``: more arguments of ``torch.compile``, e.g. ``backend``).

        The fused path. One graph serves every layer (same code, parameters
        as inputs) and, for SM, WSM and ``sdpa`` (``fullgraph=True``), every
        length and batch size, so compiling a 12-layer
        encoder costs about one layer's compilation; names, checkpoints and
        DDP wrapping are unchanged. Layer drop stays outside the graphs.
        The backend is :func:`~speechbrain_wsm.nnet.lean_mixing.compile_backend`
        (Inductor, keeping what the memory-lean SM and WSM layers keep), or
        plain Inductor when ``mode`` or ``options`` are given.

        A mixer whose ``compiles_for_every_length`` is False (SpeechBrain's
        attention, :class:`~speechbrain_wsm.nnet.attention.MHSA`: torch
        2.11's Inductor specialises its layers' backward on the length)
        compiles with ``fullgraph=False``: the graph is the same, but once
        a run has seen more lengths than Dynamo's ``recompile_limit`` (8)
        the layer runs eager for the new ones instead of stopping the run.
        """
        for layer in self.layers:
            every = getattr(layer.mixer, "compiles_for_every_length", True)
            defaults = {"fullgraph": every, "dynamic": True}
            if not {"mode", "options"} & options.keys():  # Inductor's own settings
                defaults["backend"] = compile_backend
            layer.compile(**{**defaults, **options})

    def make_mixer(
        self, mixer: str, d_model: int, nhead: int, dropout: float, causal: bool, kwargs
    ) -> nn.Module:
        """One layer's mixer (:func:`~speechbrain_wsm.nnet.registry.build_mixer`)."""
        return build_mixer(
            mixer, d_model, nhead=nhead, dropout=dropout, causal=causal, **kwargs
        )

    def forward(self, x: torch.Tensor, src_key_padding_mask=None, between=None):
        """Encode ``x`` ``[batch, frame, d_model]``.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, frame, d_model]`` input features.
        src_key_padding_mask : torch.Tensor, optional
            ``[batch, frame]`` bool, True = padding.
        between : callable, optional
            ``between(n, x) -> x``, called on the output of the ``n``-th
            layer (from 1) before the next layer reads it: intermediate
            CTC heads and their self-conditioning
            (:class:`~speechbrain_wsm.models.ctc_asr.FbankCTC`). Hidden
            states are what the layers output, before it.

        Returns
        -------
        output : torch.Tensor
            ``[batch, frame, d_model]``, the last layer's output after the final
            LayerNorm.
        hidden_states : list of torch.Tensor
            ``num_layers + 1`` tensors ``[batch, frame, d_model]``: the input
            (with positions added) and every layer's output, before the final
            LayerNorm; what MP3S probing and layer fusion read.
        """
        valid_frames(x, src_key_padding_mask)
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"expected feature size {self.d_model}, got {tuple(x.shape)}"
            )
        if self.positional_encoding == "sine":
            x = x + sinusoidal_positions(x.shape[1], self.d_model, x.device, x.dtype)
        hidden = [x]
        drop = (
            torch.rand(len(self.layers)) < self.layerdrop
            if self.training and self.layerdrop > 0
            else [False] * len(self.layers)
        )
        for n, (layer, skip) in enumerate(zip(self.layers, drop, strict=True), 1):
            if not skip:
                x = layer(x, src_key_padding_mask)
            hidden.append(x)
            if between is not None and n < len(self.layers):
                x = between(n, x)
        return self.norm(x), hidden
