"""LASER: self-supervised fine-tuning of an SSL encoder by soft-DTW alignment.

LASER (Meghanani and Hain, "LASER: Learning by Aligning Self-supervised
Representations of speech", Interspeech 2024) fine-tunes the top layers of a
pretrained SSL model so that an utterance and a perturbed copy of it (speed
and pitch changed) give representations that align under soft-DTW, with a
temporal regulariser that keeps the frames of one utterance apart::

    z = L2norm(Linear(h_last))            # per view, one shared head
    L = SDTW_div(z1, z2) + alpha * (IDM(z1) + IDM(z2))

The SCORE baseline (``score=True``): a frozen copy of the original model
encodes the perturbed view, the divergence is divided by ``T1 + T2``, no
regulariser.

What this module gives a recipe: :class:`ViewPerturbation` (the perturbed
view, torchaudio), :func:`set_laser_trainable` (which parameters train),
:class:`LASERModel` (both views through the upstream and the head, the loss)
and :func:`save_laser_model` (an output folder every ``ssl_source`` accepts).
Reconstruction, not from the paper: the pitch-shift step set, applying the
head to the frozen copy's output in SCORE, and the project encoders' "encoder
LayerNorm" (their final LayerNorm); see the recipe README.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import shutil
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.surgery import (
    resolve_layers,
    set_trainable,
    skip_frozen_activations,
)
from speechbrain_wsm.models.upstream import SSLUpstream, source_kind
from speechbrain_wsm.models.upstream.hf import load_hf_model
from speechbrain_wsm.models.upstream.sources import resolve_source
from speechbrain_wsm.nnet.layer_stack import find_layer_stack
from speechbrain_wsm.nnet.soft_dtw import contrastive_idm, soft_dtw_divergence

__all__ = [
    "LASERModel",
    "build_laser",
    "ViewPerturbation",
    "laser_trainable_modules",
    "pitch_shift",
    "save_laser_model",
    "set_laser_trainable",
]

logger = logging.getLogger(__name__)


def pitch_shift(wav: torch.Tensor, sample_rate: int, steps: int) -> torch.Tensor:
    """Shift the pitch of ``wav`` ``[sample]`` by ``steps`` semitones, same length.

    A phase-vocoder time stretch (:func:`torchaudio.functional.phase_vocoder`)
    then a resampling back to the original length, as
    :func:`torchaudio.functional.pitch_shift` does, but with the frequency
    ratio ``2 ** (steps / 12)`` rounded to a fraction ``p / q`` with
    ``q <= 20`` (within 5 cents for +-2 semitones): torchaudio resamples from
    ``int(sample_rate / ratio)`` Hz, whose sinc kernel takes tens of seconds
    per utterance on a CPU, while ``p -> q`` resampling takes milliseconds.

    Example
    -------
    >>> t = torch.arange(16000) / 16000
    >>> out = pitch_shift(torch.sin(2 * torch.pi * 200 * t), 16000, 2)
    >>> out.shape[0], int(torch.fft.rfft(out).abs().argmax())  # 200 Hz * 9/8
    (16000, 225)
    """
    if steps == 0:
        return wav
    ratio = Fraction(2 ** (steps / 12)).limit_denominator(20)
    p, q = ratio.numerator, ratio.denominator
    n_fft, hop = 512, 128
    window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(wav, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1, device=wav.device)
    stretched = torchaudio.functional.phase_vocoder(spec, q / p, advance[:, None])
    length = round(wav.shape[0] * p / q)
    out = torch.istft(stretched, n_fft, hop, window=window, length=length)
    out = torchaudio.functional.resample(out, p, q)
    n = wav.shape[0]
    return out[:n] if out.shape[0] >= n else F.pad(out, (0, n - out.shape[0]))


class ViewPerturbation(nn.Module):
    """The perturbed view of an utterance: speed, then pitch, as the published LASER.

    The defaults follow the published code (``LASER_finetuning/dataset.py``):
    every utterance gets ``SpeedPerturbation`` by a uniform choice among
    ``speed_factors`` (:func:`torchaudio.functional.speed`, what
    ``torchaudio.transforms.SpeedPerturbation`` applies; a factor of 1.0
    leaves the speed as it is), then **always** a pitch shift of +2 or -2
    semitones, the sign drawn with p 0.5 (:func:`pitch_shift`: phase vocoder
    and resampling, torchaudio). So no perturbed view equals its clean
    utterance. ``speed_prob`` / ``pitch_prob`` below 1 skip a perturbation
    with that probability (an ablation, not the published setting).

    Arguments
    ---------
    sample_rate : int
        Audio sample rate.
    speed_factors : list of float
        Speed factors drawn from (LASER HuBERT: 0.9, 1.0, 1.1).
    pitch_steps : list of int
        Semitone shifts drawn from, uniformly (published: -2, 2).
    speed_prob, pitch_prob : float
        Probability of each perturbation (published: 1.0 and 1.0).
    seed : int, optional
        Seed of a random stream of its own (default: Python's global
        ``random``, which SpeechBrain seeds and each DataLoader worker
        reseeds).

    Example
    -------
    >>> perturb = ViewPerturbation(16000, [1.1], [2], speed_prob=1.0, seed=0)
    >>> out = perturb(torch.randn(16000))
    >>> out.shape[0] < 16000
    True
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        speed_factors=(0.9, 1.0, 1.1),
        pitch_steps=(-2, 2),
        speed_prob: float = 1.0,
        pitch_prob: float = 1.0,
        seed: int | None = None,
    ):
        super().__init__()
        if not speed_factors or any(f <= 0 for f in speed_factors):
            raise UserValueError(
                f"speed_factors must be positive numbers, got {speed_factors}"
            )
        if not pitch_steps:
            raise UserValueError("pitch_steps must name at least one semitone shift")
        for name, p in (("speed_prob", speed_prob), ("pitch_prob", pitch_prob)):
            if not 0.0 <= p <= 1.0:
                raise UserValueError(f"{name} must lie in [0, 1], got {p}")
        self.sample_rate = int(sample_rate)
        self.speed_factors = [float(f) for f in speed_factors]
        self.pitch_steps = [int(s) for s in pitch_steps]
        self.speed_prob, self.pitch_prob = float(speed_prob), float(pitch_prob)
        # The global stream by default: DataLoader workers each seed it.
        self.rng = random.Random(seed) if seed is not None else random

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Perturb one utterance ``[sample]``; returns ``[sample']``."""
        if wav.dim() != 1:
            raise ValueError(f"expected one waveform [sample], got {tuple(wav.shape)}")
        out = wav
        if self.rng.random() < self.speed_prob:
            factor = self.rng.choice(self.speed_factors)
            if factor != 1.0:
                out, _ = torchaudio.functional.speed(
                    out.unsqueeze(0), self.sample_rate, factor
                )
                out = out.squeeze(0)
        if self.rng.random() < self.pitch_prob:
            steps = self.rng.choice(self.pitch_steps)
            out = pitch_shift(out, self.sample_rate, steps)
        return out


def laser_trainable_modules(
    model: nn.Module, top_layers: int = 2, train_layer_norm: bool = True
) -> list[str]:
    """Names of the submodules LASER trains: the top layers (+ the encoder LayerNorm).

    Hugging Face models: ``encoder.layers.<i>`` of the top ``top_layers``
    layers and ``encoder.layer_norm`` (in ``base`` models it normalises the
    input of the first layer, so training it sends gradients through every
    layer, as the published code does). This project's encoders: the top
    layers and the encoder's final ``norm`` (reconstruction, not from the
    paper: they have no LayerNorm before their first layer).
    """
    stack = find_layer_stack(model)
    if top_layers < 1 or top_layers > len(stack.layers):
        raise UserValueError(
            f"top_layers must lie in [1, {len(stack.layers)}] for this encoder, "
            f"got {top_layers}"
        )
    layers = resolve_layers(list(range(-top_layers, 0)), len(stack.layers))
    names = [f"{stack.name}.{i}" for i in layers]
    if train_layer_norm:
        parent = stack.name.rsplit(".", 1)[0] if "." in stack.name else ""
        norm = "layer_norm" if stack.kind == "hf" else "norm"
        names.append(f"{parent}.{norm}" if parent else norm)
    return names


def set_laser_trainable(
    upstream: SSLUpstream,
    top_layers: int = 2,
    train_layer_norm: bool = True,
    no_grad_frozen: bool = False,
) -> list[str]:
    """Freeze the upstream but its top layers (and encoder LayerNorm).

    Arguments
    ---------
    upstream : SSLUpstream
        A trainable upstream (its ``model`` is operated on).
    top_layers : int
        Top transformer layers to train (LASER: 2).
    train_layer_norm : bool
        Also train the encoder LayerNorm (see :func:`laser_trainable_modules`).
    no_grad_frozen : bool
        Run the frozen part of the forward pass without autograd
        (:func:`~speechbrain_wsm.models.surgery.skip_frozen_activations`):
        much less memory; incompatible with ``train_layer_norm`` on Hugging
        Face ``base`` models, whose encoder LayerNorm comes first.

    Returns
    -------
    list of str
        The trainable submodules' names.
    """
    if no_grad_frozen and train_layer_norm and upstream.is_hf:
        raise UserValueError(
            "no_grad_frozen=True needs train_layer_norm=False on Hugging Face "
            "models: their encoder LayerNorm feeds the first layer, so training "
            "it needs autograd through every layer"
        )
    names = laser_trainable_modules(upstream.model, top_layers, train_layer_norm)
    set_trainable(upstream.model, names)
    if no_grad_frozen:
        skip_frozen_activations(upstream.model)
    return names


class LASERModel(nn.Module):
    """Both views through the upstream and the projection head; the LASER loss.

    Arguments
    ---------
    upstream : SSLUpstream
        The trainable upstream (already set up by :func:`set_laser_trainable`).
    proj_dim : int
        Size of the projection (LASER: 256).
    gamma : float
        Soft-DTW smoothing (LASER: 0.1).
    alpha : float
        Weight of the regulariser (LASER HuBERT 0.4, WavLM 0.15).
    margin : float
        IDM margin lambda (LASER HuBERT 1.1, WavLM 1.0).
    sigma : int
        IDM window (LASER: 0).
    score : bool
        SCORE baseline: a frozen copy of the upstream (taken now) encodes the
        perturbed view, the divergence is divided by ``T1 + T2``, no IDM.
    sdtw_dtype : torch.dtype, optional
        Precision of the soft-DTW recursion (e.g. ``torch.float64``).

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import (
    ...     ContextNetwork, FbankLatentExtractor, Wav2Vec2Encoder)
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> net = Wav2Vec2Encoder(FbankLatentExtractor(n_mels=20, channels=[16, 16]),
    ...     ContextNetwork(MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="wsm"), 16))
    >>> up = SSLUpstream(net)
    >>> _ = set_laser_trainable(up, top_layers=1)
    >>> laser = LASERModel(up, proj_dim=8)
    >>> out = laser(torch.randn(1, 8000), torch.tensor([8000]),
    ...             torch.randn(1, 7000), torch.tensor([7000]))
    >>> sorted(out), out["loss"].shape
    (['idm', 'loss', 'sdtw'], torch.Size([]))
    """

    def __init__(
        self,
        upstream: SSLUpstream,
        proj_dim: int = 256,
        gamma: float = 0.1,
        alpha: float = 0.4,
        margin: float = 1.1,
        sigma: int = 0,
        score: bool = False,
        sdtw_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.upstream = upstream
        self.head = nn.Linear(upstream.hidden_size, int(proj_dim))
        self.gamma, self.alpha, self.margin, self.sigma = gamma, alpha, margin, sigma
        self.score = bool(score)
        self.sdtw_dtype = sdtw_dtype
        # Not a submodule: neither trained nor saved with the model.
        self._frozen = [copy.deepcopy(upstream).freeze()] if self.score else []

    def embed(self, wavs, lengths, frozen: bool = False):
        """``(z [batch, frame, proj_dim], frame_lengths)`` of a waveform batch."""
        upstream = self._frozen[0] if frozen else self.upstream
        if frozen:
            upstream.to(wavs.device)
        h, frames = upstream.encode(wavs, lengths)
        return F.normalize(self.head(h), dim=-1), frames

    def forward(self, wavs1, lengths1, wavs2, lengths2) -> dict:
        """The loss of a batch of (clean, perturbed) pairs.

        Arguments
        ---------
        wavs1, wavs2 : torch.Tensor
            ``[batch, sample]`` the two views (padded).
        lengths1, lengths2 : torch.Tensor
            ``[batch]`` valid samples.

        Returns
        -------
        dict
            ``loss`` (mean over the batch), ``sdtw`` and ``idm`` (detached
            batch means).
        """
        z1, f1 = self.embed(wavs1, lengths1)
        z2, f2 = self.embed(wavs2, lengths2, frozen=self.score)
        div = soft_dtw_divergence(z1, z2, self.gamma, f1, f2, dtype=self.sdtw_dtype)
        if self.score:
            div = div / (f1 + f2).to(div.dtype)
            idm = torch.zeros_like(div)
        else:
            idm = contrastive_idm(z1, self.margin, self.sigma, f1) + contrastive_idm(
                z2, self.margin, self.sigma, f2
            )
        loss = (div + self.alpha * idm).mean()
        return {"loss": loss, "sdtw": div.detach().mean(), "idm": idm.detach().mean()}


def build_laser(
    ssl_source,
    top_layers: int = 2,
    train_layer_norm: bool = True,
    no_grad_frozen: bool = False,
    *,
    sdtw_float64: bool = False,
    normalize_wav: bool | None = None,
    hf_config_overrides: dict | None = None,
    **model_kwargs,
) -> LASERModel:
    """The recipe's model: ``ssl_source`` loaded trainable, frozen but its top layers.

    ``ssl_source``, ``normalize_wav`` and ``hf_config_overrides`` go to
    :func:`~speechbrain_wsm.models.upstream.load_upstream`; ``top_layers``,
    ``train_layer_norm`` and ``no_grad_frozen`` to :func:`set_laser_trainable`;
    ``sdtw_float64`` runs the soft-DTW recursion in double precision; the
    other keyword arguments (``proj_dim``, ``gamma``, ``alpha``, ``margin``,
    ``sigma``, ``score``) are :class:`LASERModel`'s.
    """
    from speechbrain_wsm.models.upstream import load_upstream

    upstream = load_upstream(
        ssl_source,
        frozen=False,
        normalize_wav=normalize_wav,
        hf_config_overrides=hf_config_overrides,
    )
    set_laser_trainable(upstream, top_layers, train_layer_norm, no_grad_frozen)
    sdtw_dtype = torch.float64 if sdtw_float64 else None
    return LASERModel(upstream, sdtw_dtype=sdtw_dtype, **model_kwargs)


def save_laser_model(upstream: SSLUpstream, ssl_source, folder) -> Path:
    """Write the fine-tuned upstream as a folder every ``ssl_source`` accepts.

    Hugging Face source: the source model as it was saved (every weight,
    ``masked_spec_embed`` included, which a model loaded with
    ``mask_time_prob: 0`` does not build) with the fine-tuned weights loaded
    into it, ``save_pretrained`` into ``folder``, and the source's own
    ``config.json`` and ``preprocessor_config.json`` copied over (so the
    fine-tuning config overrides do not leak into the probes):
    ``AutoModel.from_pretrained(folder)`` finds no missing or unexpected key. This
    project's pretraining output: ``folder/hyperparams.yaml`` copied from the
    source and the whole pretraining model (its encoder as fine-tuned) saved
    by the project's RobustCheckpointer in ``folder/save``. The projection head is
    not saved (LASER discards it).

    Returns
    -------
    Path
        ``folder``.
    """

    from speechbrain_wsm.models.wav2vec2 import load_pretrained_model
    from speechbrain_wsm.recipe.checkpoints import RobustCheckpointer

    source, folder = Path(ssl_source), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = resolve_source(source)
    if source_kind(source) == "hf":
        full = load_hf_model(source)  # every weight of the source, as saved
        missing, unexpected = full.load_state_dict(
            upstream.model.state_dict(), strict=False
        )
        if unexpected:
            raise RuntimeError(f"fine-tuned weights not in {source}: {unexpected}")
        kept = [k for k in missing if k not in upstream.model.state_dict()]
        if kept:
            logger.info("exported from %s as they were: %s", source, kept)
        full.save_pretrained(str(folder))
        for name in ("config.json", "preprocessor_config.json"):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
    else:
        full = load_pretrained_model(source)
        full.encoder.load_state_dict(upstream.model.state_dict())
        shutil.copyfile(source / "hyperparams.yaml", folder / "hyperparams.yaml")
        saver = RobustCheckpointer(folder / "save", recoverables={"wav2vec2": full})
        saver.save_and_keep_only(meta={"laser": True}, num_to_keep=1)
    logger.info("LASER model written to %s", folder)
    return folder
