"""The SSL upstream module: waveforms and sample counts in, hidden states and frame counts out."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from speechbrain_wsm.models.upstream.hf import hf_model_inputs, hf_output_lengths
from speechbrain_wsm.nnet.layer_stack import is_hf_ssl

__all__ = ["SSLUpstream"]


class SSLUpstream(nn.Module):
    """A pretrained SSL encoder: ``(wavs, lengths) -> (hidden_states, frame_lengths)``.

    One call for both kinds of pretrained model:

    * a Hugging Face wav2vec 2.0 / HuBERT / WavLM model (base or ``ForCTC``:
      the base model is kept). Its input is prepared by
      :func:`~speechbrain_wsm.models.upstream.hf.hf_model_inputs` (padding
      zeroed, optional standardisation, optional sample attention mask);
    * this project's :class:`~speechbrain_wsm.models.wav2vec2.Wav2Vec2Encoder`
      (or any module called ``model(wav, lengths) -> (output, hidden_states,
      frame_lengths)`` with a ``latent_extractor.output_lengths``,
      ``num_layers`` and ``d_model``), which standardises its input itself.

    Lengths are absolute throughout: ``lengths`` counts samples, and
    ``frame_lengths`` counts the valid output frames of each utterance (the
    relative ``wav_lens`` of a SpeechBrain batch are converted once, at the
    edge, by the module a Brain calls).

    Frozen or trainable is the caller's choice: ``frozen=True`` (or
    :meth:`freeze`) makes every parameter constant, keeps the module in eval
    mode whatever ``.train()`` says (no dropout, layer drop or time masking)
    and runs the forward pass without autograd, as MP3S probing wants.
    Trainable, the model is a plain submodule (``upstream.model``) that
    :mod:`~speechbrain_wsm.models.surgery` can operate on.

    Arguments
    ---------
    model : torch.nn.Module
        The pretrained model (see above).
    normalize_wav : bool
        Hugging Face models: standardise every utterance over its valid
        samples first (what layer-norm checkpoints expect; see
        :func:`~speechbrain_wsm.models.upstream.hf.hf_input_options`).
    attention_mask : bool
        Hugging Face models: pass the sample attention mask. Group-norm
        ``base`` checkpoints were pretrained without one; new SM/WSM blocks
        put into a model need it to leave padding out of their summaries.
    frozen : bool
        Freeze (see above).
    fingerprint : dict, optional
        What identifies the weights (for a feature cache); the Hugging Face
        input options are added to it.

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Encoder
    >>> net = Wav2Vec2Encoder.small("wsm")
    >>> upstream = SSLUpstream(net, frozen=True)
    >>> states, frames = upstream(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> len(states), states[0].shape, frames.tolist(), states[-1].requires_grad
    (3, torch.Size([2, 46, 16]), [46, 21], False)
    """

    def __init__(
        self,
        model: nn.Module,
        normalize_wav: bool = False,
        attention_mask: bool = True,
        frozen: bool = False,
        fingerprint: dict | None = None,
    ):
        super().__init__()
        self.is_hf = is_hf_ssl(model)
        self.model = model.base_model if self.is_hf else model
        if self.is_hf:
            config = self.model.config
            self.num_hidden_states = int(config.num_hidden_layers) + 1
            self.hidden_size = int(config.hidden_size)
        else:
            self.num_hidden_states = int(model.num_layers) + 1
            self.hidden_size = int(model.d_model)
        self.normalize_wav = bool(normalize_wav)
        self.attention_mask = bool(attention_mask)
        self.fingerprint = dict(fingerprint or {})
        if self.is_hf:
            self.fingerprint.update(
                normalize_wav=self.normalize_wav, attention_mask=self.attention_mask
            )
        self.frozen = False
        if frozen:
            self.freeze()

    def freeze(self) -> SSLUpstream:
        """Constant parameters, eval mode for good, no autograd in forward."""
        self.frozen = True
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True):
        """As :meth:`torch.nn.Module.train`; a frozen upstream stays in eval mode."""
        return super().train(mode and not self.frozen)

    def output_lengths(self, samples) -> torch.Tensor:
        """Frames the model makes of ``samples`` input samples (long)."""
        if self.is_hf:
            return hf_output_lengths(self.model, samples)
        return self.model.latent_extractor.output_lengths(
            torch.as_tensor(samples)
        ).long()

    def _run(self, wavs, lengths, hidden_states: bool):
        if wavs.dim() != 2:
            raise ValueError(
                f"expected a waveform batch [batch, sample], got {tuple(wavs.shape)}"
            )
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
        lengths = torch.as_tensor(lengths).to(wavs.device)
        grad = contextlib.nullcontext() if not self.frozen else torch.no_grad()
        with grad:
            if self.is_hf:
                inputs, kwargs = hf_model_inputs(
                    wavs, lengths, self.normalize_wav, self.attention_mask
                )
                if hidden_states:
                    kwargs["output_hidden_states"] = True
                out = self.model(inputs, **kwargs)
                output = out.last_hidden_state
                states = list(out.hidden_states) if hidden_states else None
            else:
                output, states, _ = self.model(wavs, lengths)
                states = list(states)
        frames = self.output_lengths(lengths).to(wavs.device)
        return output, states, frames.clamp(max=output.shape[1])

    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every hidden state of a waveform batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, sample]`` 16 kHz audio.
        lengths : torch.Tensor, optional
            ``[batch]`` valid samples of each utterance (None: no padding).

        Returns
        -------
        hidden_states : list of torch.Tensor
            ``num_hidden_states`` tensors ``[batch, frame, hidden_size]``: the
            input of the first layer, then every layer's output.
        frame_lengths : torch.Tensor
            ``[batch]`` long, valid frames of each utterance.
        """
        _, states, frames = self._run(wavs, lengths, hidden_states=True)
        return states, frames

    def encode(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output: ``(features [batch, frame, hidden_size], frame_lengths)``.

        The last hidden state, after the model's final LayerNorm where it has
        one (this project's encoders, the pre-LayerNorm ``large`` Hugging
        Face models): what a head on top of the whole model reads.
        """
        output, _, frames = self._run(wavs, lengths, hidden_states=False)
        return output, frames
