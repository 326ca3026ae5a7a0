"""The wav2vec 2.0 context network, encoder (front end + context) and pretraining model."""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_wsm.models.lengths import (
    lengths_to_padding_mask,
    relative_to_absolute,
)
from speechbrain_wsm.nnet.frontend import FrameCounter, check_waveform


class ConvPositionalEmbedding(nn.Module):
    """wav2vec 2.0's convolutional relative positional embedding.

    A grouped, weight-normalised convolution over time followed by GELU; its
    output is added to the input. Padded frames are zeroed before the
    convolution, so they never reach a valid frame.

    Arguments
    ---------
    d_model : int
        Feature size.
    kernel_size : int
        Convolution width in frames (128 in wav2vec 2.0).
    groups : int
        Convolution groups (16 in wav2vec 2.0).

    Example
    -------
    >>> pos = ConvPositionalEmbedding(16, kernel_size=8, groups=4)
    >>> pos(torch.randn(2, 10, 16)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(self, d_model: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        if d_model % groups:
            raise ValueError(f"d_model {d_model} must be divisible by groups {groups}")
        conv = nn.Conv1d(
            d_model, d_model, kernel_size, padding=kernel_size // 2, groups=groups
        )
        nn.init.normal_(
            conv.weight, mean=0.0, std=(4.0 / (kernel_size * d_model)) ** 0.5
        )
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """``x`` ``[batch, frame, d_model]`` -> positional term, same shape."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        y = self.conv(x.transpose(1, 2))[..., : x.shape[1]]
        return self.act(y).transpose(1, 2)


class ContextNetwork(nn.Module):
    """Projection, mask embedding, positions and the context encoder.

    ``latents -> Linear(in_dim, d_model) -> Dropout``; frames selected by
    ``mask`` are replaced by a learned embedding; the optional convolutional
    positional embedding is added; then the encoder runs. The same steps run
    for every mixer, so MHSA, SM and WSM models differ only in the mixer.

    Arguments
    ---------
    encoder : MixerEncoder
        Any module with ``d_model`` and
        ``forward(x, src_key_padding_mask) -> (output, hidden_states)``.
    in_dim : int
        Latent feature size (the front end's ``out_dim``).
    dropout_input : float
        Dropout on the projected latents.
    pos_conv_kernel : int
        Width of the convolutional positional embedding; 0 disables it (the
        paper's models use the encoder's sinusoidal positions instead).
    pos_conv_groups : int
        Groups of that convolution.

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import FbankLatentExtractor
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> enc = MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="sm")
    >>> net = ContextNetwork(enc, in_dim=8)
    >>> out, hidden = net(torch.randn(2, 10, 8))
    >>> out.shape, len(hidden)
    (torch.Size([2, 10, 16]), 3)
    """

    def __init__(
        self,
        encoder: nn.Module,
        in_dim: int,
        dropout_input: float = 0.1,
        pos_conv_kernel: int = 0,
        pos_conv_groups: int = 16,
    ):
        super().__init__()
        self.d_model = encoder.d_model
        self.input_proj = nn.Linear(in_dim, self.d_model)
        self.dropout = nn.Dropout(dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(self.d_model).uniform_())
        self.pos_conv = (
            ConvPositionalEmbedding(self.d_model, pos_conv_kernel, pos_conv_groups)
            if pos_conv_kernel > 0
            else None
        )
        self.encoder = encoder

    def forward(self, latents, padding_mask=None, mask=None):
        """Encode ``latents`` ``[batch, frame, in_dim]``.

        Arguments
        ---------
        latents : torch.Tensor
            ``[batch, frame, in_dim]`` front-end output.
        padding_mask : torch.Tensor, optional
            ``[batch, frame]`` bool, True = padding.
        mask : torch.Tensor, optional
            ``[batch, frame]`` bool, True = replace by the mask embedding.

        Returns
        -------
        output, hidden_states
            As :meth:`MixerEncoder.forward`: ``[batch, frame, d_model]`` and
            the list of ``num_layers + 1`` hidden states.
        """
        x = self.dropout(self.input_proj(latents))
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(
                    f"mask must be [batch, frame] = {tuple(x.shape[:2])}, "
                    f"got {tuple(mask.shape)}"
                )
            x = torch.where(mask.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x, padding_mask)
        return self.encoder(x, src_key_padding_mask=padding_mask)


class Wav2Vec2Encoder(nn.Module):
    """Waveform to contextual features: front end + context network.

    This is what downstream recipes (MP3S probing, selective fine-tuning) get
    from :func:`load_pretrained_encoder`. One entry point, :meth:`forward`,
    with absolute lengths (samples in, frames out) as every module inside a
    model takes them (:mod:`speechbrain_wsm.models.lengths`);
    :meth:`latents` is its front-end step alone.

    Arguments
    ---------
    latent_extractor : nn.Module
        :class:`FbankLatentExtractor` or :class:`WaveformLatentExtractor` (any
        module with ``out_dim``, ``output_lengths(samples)`` and
        ``forward(wav, lengths)``).
    context : ContextNetwork
        The context network.

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import FbankLatentExtractor
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> fe = FbankLatentExtractor(n_mels=20, channels=[16, 16])
    >>> net = ContextNetwork(MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="wsm"), 16)
    >>> model = Wav2Vec2Encoder(fe, net).eval()
    >>> out, hidden, frames = model(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> out.shape, len(hidden), frames.tolist(), model.num_layers
    (torch.Size([2, 46, 16]), 3, [46, 21], 2)
    """

    def __init__(self, latent_extractor: nn.Module, context: ContextNetwork):
        super().__init__()
        self.latent_extractor = latent_extractor
        self.context = context

    @classmethod
    def small(
        cls, mixer: str = "wsm", d_model: int = 16, num_layers: int = 2, **kwargs
    ) -> Wav2Vec2Encoder:
        """A small random encoder (20-mel fbank front end), for examples and tests.

        ``kwargs`` go to :class:`~speechbrain_wsm.nnet.encoders.MixerEncoder`.

        Example
        -------
        >>> Wav2Vec2Encoder.small("sm").num_layers
        2
        """
        from speechbrain_wsm.models.wav2vec2.frontends import FbankLatentExtractor
        from speechbrain_wsm.nnet.encoders import MixerEncoder

        encoder = MixerEncoder(
            num_layers, d_model, nhead=2, d_ffn=2 * d_model, mixer=mixer, **kwargs
        )
        frontend = FbankLatentExtractor(n_mels=20, channels=[16, 16])
        return cls(frontend, ContextNetwork(encoder, 16))

    @property
    def d_model(self) -> int:
        """Feature size of the output and of every hidden state."""
        return self.context.d_model

    @property
    def num_layers(self) -> int:
        """Context-network layers (``hidden_states`` has one more entry)."""
        return len(self.context.encoder.layers)

    def latents(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """The front end alone: ``(latents, frame_lengths, padding_mask)``.

        What :meth:`forward` encodes, and what pretraining quantises into
        targets. ``wav`` ``[batch, sample]``, ``lengths`` ``[batch]`` valid
        samples (None: no padding) -> latents ``[batch, frame, out_dim]``,
        ``[batch]`` valid frames and the ``[batch, frame]`` bool padding mask
        (True = padding); both None when ``lengths`` is None.
        """
        check_waveform(wav)
        if lengths is None:
            return self.latent_extractor(wav), None, None
        lengths = torch.as_tensor(lengths, device=wav.device)
        latents = self.latent_extractor(wav, lengths)
        frames = self.latent_extractor.output_lengths(lengths)
        return latents, frames, lengths_to_padding_mask(frames, latents.shape[1])

    def forward(self, wav, lengths=None, mask=None):
        """Encode a waveform batch; absolute lengths in and out.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, sample]`` 16 kHz audio (any scale: each utterance is
            standardised by the front end).
        lengths : torch.Tensor, optional
            ``[batch]`` valid samples of each utterance; None means no
            padding. A SpeechBrain batch's relative ``wav_lens`` are
            converted by the caller, once
            (:func:`~speechbrain_wsm.models.lengths.relative_to_absolute`).
        mask : torch.Tensor, optional
            ``[batch, frame]`` bool frames to mask (pretraining only).

        Returns
        -------
        output : torch.Tensor
            ``[batch, frame, d_model]``, 20 ms frames, after the final
            LayerNorm.
        hidden_states : list of torch.Tensor
            ``num_layers + 1`` tensors ``[batch, frame, d_model]``: the
            encoder input (projected latents, with positions) and every
            layer's output.
        frame_lengths : torch.Tensor or None
            ``[batch]`` valid frames (None when ``lengths`` is None).
        """
        latents, frames, padding_mask = self.latents(wav, lengths)
        output, hidden_states = self.context(latents, padding_mask, mask)
        return output, hidden_states, frames


class Wav2Vec2Pretrainer(nn.Module):
    """The model wav2vec 2.0 pretraining trains: encoder, quantiser, projection.

    ``forward(wav, wav_lens, mask)`` runs the front end; the quantiser turns
    the latents of the masked frames into targets; the context network sees
    the latents with masked frames replaced by the mask embedding, and its
    outputs at those frames are projected to ``final_dim`` as predictions.

    Arguments
    ---------
    latent_extractor : nn.Module
        The front end (see :class:`Wav2Vec2Encoder`).
    encoder : MixerEncoder
        The context encoder.
    quantiser : nn.Module
        SpeechBrain's ``W2VTargetQuantiser`` (Gumbel, 2 groups), reading
        ``latent_extractor.out_dim`` features and writing ``final_dim``.
    final_dim : int
        Size of predictions and targets.
    dropout_input, pos_conv_kernel, pos_conv_groups
        See :class:`ContextNetwork`.

    Example
    -------
    >>> from speechbrain.lobes.models.wav2vec import W2VTargetQuantiser
    >>> from speechbrain_wsm.models.wav2vec2 import FbankLatentExtractor
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> model = Wav2Vec2Pretrainer(
    ...     FbankLatentExtractor(n_mels=20, channels=[16, 16]),
    ...     MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="sm"),
    ...     W2VTargetQuantiser(in_dim=16, out_dim=8, num_vars=10),
    ...     final_dim=8,
    ... )
    >>> mask = torch.zeros(2, 46, dtype=torch.bool)
    >>> mask[:, 5:15] = True
    >>> out = model(torch.randn(2, 16000), torch.tensor([1.0, 0.8]), mask)
    >>> out["predictions"].shape, out["targets"].shape
    (torch.Size([2, 10, 8]), torch.Size([2, 10, 8]))
    """

    def __init__(
        self,
        latent_extractor: nn.Module,
        encoder: nn.Module,
        quantiser: nn.Module,
        final_dim: int = 256,
        dropout_input: float = 0.1,
        pos_conv_kernel: int = 0,
        pos_conv_groups: int = 16,
    ):
        super().__init__()
        in_dim = latent_extractor.out_dim
        q_in = getattr(getattr(quantiser, "quantiser", None), "input_dim", in_dim)
        if q_in != in_dim:
            raise ValueError(
                f"the quantiser reads {q_in} features but the front end writes {in_dim}"
            )
        q_out = getattr(getattr(quantiser, "proj", None), "out_features", final_dim)
        if q_out != final_dim:
            raise ValueError(
                f"the quantiser writes {q_out} features, final_dim is {final_dim}"
            )
        context = ContextNetwork(
            encoder, in_dim, dropout_input, pos_conv_kernel, pos_conv_groups
        )
        self.encoder = Wav2Vec2Encoder(latent_extractor, context)
        self.quantiser = quantiser
        self.feat_proj = nn.Linear(context.d_model, final_dim)
        self.final_dim = final_dim

    @property
    def output_lengths(self) -> FrameCounter:
        """Samples -> frames of the front end (for the span masks)."""
        return self.encoder.latent_extractor.output_lengths

    def update_temperature(self, optimizer_step: int) -> None:
        """Anneal the Gumbel temperature to its value at ``optimizer_step``."""
        self.quantiser.quantiser.update_temp(optimizer_step)

    def forward(self, wav, wav_lens, mask):
        """One pretraining forward pass.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, sample]`` audio.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.
        mask : torch.Tensor
            ``[batch, frame]`` bool, the same number of masked (valid) frames
            in every utterance, as SpeechBrain's ``compute_mask`` makes them.

        Returns
        -------
        dict
            ``predictions`` and ``targets`` ``[batch, masked, final_dim]``,
            ``num_masked``, and the quantiser's ``diversity_loss``,
            ``prob_perplex``, ``code_perplex``, ``temp``.
        """
        samples = None
        if wav_lens is not None:  # the Brain edge: converted once, here
            samples = relative_to_absolute(wav_lens, wav.shape[1]).to(wav.device)
        latents, _, padding_mask = self.encoder.latents(wav, samples)
        if mask.shape != latents.shape[:2]:
            raise ValueError(
                f"mask is {tuple(mask.shape)} but the front end made "
                f"{tuple(latents.shape[:2])} [batch, frame]: compute the mask with "
                "this model's output_lengths"
            )
        counts = mask.sum(1)
        if bool((counts != counts[0]).any()) or int(counts[0]) < 2:
            raise ValueError(
                "every utterance needs the same number (>= 2) of masked frames, "
                f"got {counts.tolist()}"
            )
        if padding_mask is not None and bool((mask & padding_mask).any()):
            raise ValueError("the mask selects padded frames")
        output, _ = self.encoder.context(latents, padding_mask, mask)
        B, C = wav.shape[0], latents.shape[-1]
        predictions = self.feat_proj(output[mask]).view(B, -1, self.final_dim)
        targets, meta = self.quantiser(latents[mask].view(B, -1, C))
        return {
            "predictions": predictions,
            "targets": targets,
            "num_masked": counts.sum(),
            **meta,
        }
