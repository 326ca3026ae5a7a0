"""CTC models on an SSL upstream, and the folder a fine-tuned one is saved in.

The pieces of selective CTC fine-tuning that the SSL loader needs too (a
selective fine-tuning export is an ``ssl_source`` of its own, see
:func:`~speechbrain_wsm.models.upstream.sources.resolve_source`), kept below
both so that neither imports the other:

* :class:`TrainableSSLEncoder`: the SSL upstream, trainable, with the
  fine-tuning call; :class:`SSLCTCModel`, the base of the CTC models on it
  (dropout, linear head, the evaluation contract); :class:`CTCFineTuner`,
  the encoder plus a CTC head;
* :func:`assemble_finetuner`: a loaded SSL model, operated on for a selective
  fine-tuning mode (:func:`~speechbrain_wsm.models.surgery.apply_finetuning_mode`),
  with a head;
* :func:`save_finetuned` / :func:`rebuild_finetuned`: the folder format
  (``finetuned.json`` with the build arguments, ``model.ckpt`` with the
  state dict, ``ssl_config/`` for Hugging Face encoders). Rebuilding takes
  the loader of the pretrained model as an argument: the loader
  (:func:`~speechbrain_wsm.models.upstream.load_trainable_ssl`) itself reads
  fine-tuned folders through :func:`rebuild_finetuned`.

:func:`speechbrain_wsm.models.finetuning.build_finetuner` and
:func:`~speechbrain_wsm.models.finetuning.load_finetuned` are the entry points
a recipe calls.

Lengths: :class:`SSLCTCModel` is what a Brain calls; it turns the relative
``wav_lens`` into sample counts once, the encoder gives frame counts, and the
relative output lengths of the evaluation contract are made from those.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from speechbrain_wsm.errors import UserFileNotFoundError
from speechbrain_wsm.models.lengths import (
    lengths_to_padding_mask,
    relative_to_absolute,
)
from speechbrain_wsm.models.surgery import apply_finetuning_mode
from speechbrain_wsm.models.upstream.encoder import SSLUpstream
from speechbrain_wsm.models.upstream.hf import hf_model_from_config

__all__ = [
    "CTCFineTuner",
    "SSLCTCModel",
    "TrainableSSLEncoder",
    "assemble_finetuner",
    "rebuild_finetuned",
    "save_finetuned",
]

logger = logging.getLogger(__name__)

_WEIGHTS = "model.ckpt"
_META = "finetuned.json"
_HF_CONFIG = "ssl_config"


class TrainableSSLEncoder(SSLUpstream):
    """The SSL upstream, trainable, with the fine-tuning call.

    ``encoder(wav, wav_lens) -> (features, padding_mask)`` with relative
    ``wav_lens``; :meth:`~speechbrain_wsm.models.upstream.SSLUpstream.encode`
    takes sample counts and gives frame counts. Hugging Face models always get
    the attention mask (the new WSM/SM blocks need it to leave padding out of
    their averages) and zeros in padded samples.

    Arguments
    ---------
    model : torch.nn.Module
        A Hugging Face wav2vec 2.0 / HuBERT / WavLM model, or this project's
        ``Wav2Vec2Encoder`` (see
        :func:`~speechbrain_wsm.models.upstream.load_trainable_ssl`).
    normalize_wav : bool
        Hugging Face models only: standardise each waveform over its valid
        samples first (what layer-norm checkpoints expect).

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Encoder
    >>> enc = TrainableSSLEncoder(Wav2Vec2Encoder.small("mhsa"))
    >>> feats, pad = enc(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, pad.sum(1).tolist(), enc.d_model
    (torch.Size([2, 21, 16]), [0, 12], 16)
    """

    def __init__(self, model: nn.Module, normalize_wav: bool = False):
        super().__init__(model, normalize_wav=normalize_wav, attention_mask=True)

    @property
    def d_model(self) -> int:
        """Feature size of the output."""
        return self.hidden_size

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None):
        """Encode ``wav`` ``[batch, sample]`` with relative lengths ``wav_lens``.

        Returns
        -------
        features : torch.Tensor
            ``[batch, frame, d_model]``.
        padding_mask : torch.Tensor
            ``[batch, frame]`` bool, True = padding.
        """
        samples = None
        if wav_lens is not None:
            samples = relative_to_absolute(wav_lens, wav.shape[-1])
        out, frames = self.encode(wav, samples)
        return out, lengths_to_padding_mask(frames, out.shape[1])


class SSLCTCModel(nn.Module):
    """Base of the CTC models on an SSL upstream: features, dropout, linear head.

    A subclass sets ``self.dropout`` and ``self.head`` and defines
    :meth:`features`; :meth:`forward` is the evaluation contract of
    :mod:`speechbrain_wsm.evaluate` (relative lengths in and out, absolute
    sample and frame counts inside). :class:`CTCFineTuner` and
    :class:`~speechbrain_wsm.models.fusion.FeatureFusionCTC` are two.
    """

    def features(self, wav: torch.Tensor, samples: torch.Tensor | None = None):
        """``(features [batch, frame, d_model], frame_lengths [batch])`` before the head."""
        raise NotImplementedError

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None):
        """Log-probabilities and relative output lengths of a waveform batch.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, sample]`` audio.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths in ``[0, 1]``.

        Returns
        -------
        log_probs : torch.Tensor
            ``[batch, frame, vocab]`` float32 log-softmax outputs.
        out_lens : torch.Tensor
            ``[batch]`` relative lengths: valid frames / ``frame``.
        """
        samples = None
        if wav_lens is not None:
            samples = relative_to_absolute(wav_lens, wav.shape[-1])
        feats, frames = self.features(wav, samples)
        logits = self.head(self.dropout(feats))
        out_lens = frames.float() / max(feats.shape[1], 1)
        return logits.float().log_softmax(-1), out_lens


class CTCFineTuner(SSLCTCModel):
    """SSL encoder + dropout + linear CTC head.

    Arguments
    ---------
    encoder : TrainableSSLEncoder
        The (possibly operated-on) pretrained encoder.
    vocab_size : int
        Output units, the CTC blank included (index 0).
    dropout : float
        Dropout before the head.

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Encoder
    >>> model = CTCFineTuner(TrainableSSLEncoder(Wav2Vec2Encoder.small("mhsa")), 5)
    >>> log_probs, out_lens = model(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> log_probs.shape, (out_lens * log_probs.shape[1]).round().tolist()
    (torch.Size([2, 21, 5]), [21.0, 9.0])
    """

    def __init__(
        self, encoder: TrainableSSLEncoder, vocab_size: int, dropout: float = 0.1
    ):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.d_model, vocab_size)

    def features(self, wav: torch.Tensor, samples: torch.Tensor | None = None):
        """The encoder's output and frame lengths (:meth:`SSLUpstream.encode`)."""
        return self.encoder.encode(wav, samples)


def assemble_finetuner(ssl: nn.Module, args: dict) -> CTCFineTuner:
    """A CTC fine-tuner on the loaded SSL model ``ssl``, set up for ``args["mode"]``.

    Arguments
    ---------
    ssl : torch.nn.Module
        The pretrained model (Hugging Face base model or ``Wav2Vec2Encoder``).
    args : dict
        The arguments of :func:`~speechbrain_wsm.models.finetuning.build_finetuner`
        (as ``finetuned.json`` records them).

    Returns
    -------
    CTCFineTuner
        With ``build_args`` (``args``, normalised for JSON) and
        ``new_modules`` (the freshly initialised modules, head included).
    """
    args = {
        **args,
        "ssl_source": str(args["ssl_source"]),
        "mixer_kwargs": dict(args.get("mixer_kwargs") or {}),
        "hf_config_overrides": dict(args.get("hf_config_overrides") or {}),
        "normalize_wav": bool(args.get("normalize_wav")),
    }
    model = CTCFineTuner(
        TrainableSSLEncoder(ssl, args["normalize_wav"]),
        args["vocab_size"],
        args["head_dropout"],
    )
    trained = apply_finetuning_mode(
        model,
        args["mode"],
        args["num_layers"],
        freeze_front_end=args["freeze_front_end"],
        keep_trainable=["head"],
        **args["mixer_kwargs"],
    )
    model.build_args = args
    model.new_modules = [] if args["mode"] in ("full", "mhsa_top") else trained
    model.new_modules.append("head")
    return model


def save_finetuned(model: CTCFineTuner, folder) -> Path:
    """Save a model made by :func:`~speechbrain_wsm.models.finetuning.build_finetuner`.

    :func:`~speechbrain_wsm.models.finetuning.load_finetuned` rebuilds it.

    Writes ``finetuned.json`` (the build arguments), ``model.ckpt`` (the whole
    state dict) and, for Hugging Face encoders, the encoder's config in
    ``ssl_config/`` (so reloading needs no access to ``ssl_source``).

    Returns
    -------
    Path
        ``folder``.
    """
    if not hasattr(model, "build_args"):
        raise ValueError("save_finetuned needs a model made by build_finetuner")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = dict(model.build_args)
    if model.encoder.is_hf:
        model.encoder.model.config.save_pretrained(folder / _HF_CONFIG)
        meta["hf_config"] = _HF_CONFIG
    tmp = folder / (_WEIGHTS + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, folder / _WEIGHTS)
    (folder / _META).write_text(json.dumps(meta, indent=2))
    return folder


def rebuild_finetuned(
    folder, load_ssl: Callable[[str, dict], nn.Module], ssl_source=None
) -> CTCFineTuner:
    """Rebuild a model saved by :func:`save_finetuned` and load its weights.

    Arguments
    ---------
    folder : str or Path
        What :func:`save_finetuned` wrote.
    load_ssl : callable
        ``load_ssl(ssl_source, hf_config_overrides) -> model``: loads the
        pretrained model the fine-tuning started from, trainable (this
        project's encoders; Hugging Face encoders are rebuilt from the saved
        config). :func:`~speechbrain_wsm.models.upstream.load_trainable_ssl`.
    ssl_source : str, optional
        Where the pretrained model is now, for this project's encoders when
        it moved.

    Returns
    -------
    CTCFineTuner
        On the CPU, in eval mode.
    """
    folder = Path(folder)
    meta_path = folder / _META
    if not meta_path.is_file():
        raise UserFileNotFoundError(
            f"{meta_path} not found: not a save_finetuned folder"
        )
    meta = json.loads(meta_path.read_text())
    config = meta.pop("hf_config", None)
    if ssl_source is not None:
        meta["ssl_source"] = str(ssl_source)
    # Building draws random initial weights: leave the caller's RNG alone.
    with torch.random.fork_rng(devices=[]):
        if config:
            ssl = hf_model_from_config(folder / config, meta["hf_config_overrides"])
        else:
            ssl = load_ssl(meta["ssl_source"], meta["hf_config_overrides"])
        model = assemble_finetuner(ssl, meta)
    state = torch.load(folder / _WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    logger.info("loaded the fine-tuned model of %s", folder)
    return model.eval()
