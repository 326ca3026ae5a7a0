"""Frozen self-supervised encoders for probing, whatever trained them.

MP3S judges an SSL encoder by freezing it, learning a softmax-weighted sum of
all its hidden states and training a small task-specific probe on that sum.
This module gives every probe recipe one way to get those hidden states, on
top of the one SSL upstream (:mod:`speechbrain_wsm.models.upstream`):

* :func:`load_ssl_encoder` reads ``ssl_source``, a folder that is either

  - an output folder of this project's wav2vec 2.0 pretraining recipe
    (``hyperparams.yaml`` + ``save/CKPT+*``), or
  - a local Hugging Face wav2vec 2.0 / HuBERT / WavLM folder
    (``config.json`` + weights),

  and returns a :class:`SSLEncoder`: ``encoder(wavs, wav_lens)`` is the list
  of all hidden states (the input to the first layer, then every layer's
  output: 13 states for a 12-layer model), computed in eval mode without
  autograd by a frozen :class:`~speechbrain_wsm.models.upstream.SSLUpstream`.
* :class:`FeatureCache`: optional on-disk cache of those states per utterance
  (``feature_cache_dir``), so that probe epochs after the first skip the
  encoder. The cache is tied to the source: other weights, another
  checkpoint or other input options empty it.
* :class:`SSLProbe`: encoder + :class:`~speechbrain_wsm.nnet.fusion.WeightedLayerSum`
  + a trainable head; ``probe(wavs, wav_lens) -> (output, wav_lens)``.

:class:`SSLEncoder` and :class:`SSLProbe` are what a Brain calls: they take
the relative lengths of SpeechBrain batches (``wav_lens`` in ``[0, 1]``) and
turn them into sample counts once; hidden states have the same relative
lengths (padded frames are whatever the encoder made of the padding and must
be ignored, as usual).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from speechbrain.utils.callchains import lengths_arg_name
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.lengths import relative_to_absolute
from speechbrain_wsm.models.upstream import SSLUpstream, load_upstream
from speechbrain_wsm.nnet.fusion import WeightedLayerSum

__all__ = [
    "FeatureCache",
    "SSLEncoder",
    "SSLProbe",
    "load_ssl_encoder",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- #
# Feature cache
# --------------------------------------------------------------------------- #


class FeatureCache:
    """Per-utterance hidden states on disk, tied to the encoder that made them.

    Each utterance's states are one file ``[num_states, frames, feature]``
    (``dtype``, fp16 by default) under ``folder/features/``, keyed by the
    utterance ID and checked against the number of input samples. The
    fingerprint of the encoder (source, weight files, input options) is kept
    in ``folder/cache.json``; a different fingerprint empties the cache.
    Files are written through a temporary file and a rename, so several
    processes may share a cache.

    Size: ``num_states * 50 frames/s * feature * 2`` bytes per second of audio
    (about 1 MB/s for a 12-layer, 768-wide model): meant for small probing
    sets, or a fast disk.

    Arguments
    ---------
    folder : str or Path
        The cache folder (created if needed).
    fingerprint : dict
        JSON-serialisable identity of the encoder.
    dtype : torch.dtype
        Storage type.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> cache = FeatureCache(d, {"source": "a"})
    >>> cache.save("utt-1", torch.ones(3, 5, 4), num_samples=1600)
    >>> cache.load("utt-1", 1600).shape, cache.load("utt-1", 1700)
    (torch.Size([3, 5, 4]), None)
    >>> FeatureCache(d, {"source": "b"}).load("utt-1", 1600) is None
    True
    """

    def __init__(self, folder, fingerprint: dict, dtype: torch.dtype = torch.float16):
        self.folder = Path(folder)
        self.dtype = dtype
        self.features = self.folder / "features"
        self.key = hashlib.sha1(
            json.dumps(fingerprint, sort_keys=True, default=str).encode()
        ).hexdigest()
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "cache.json"
        previous = None
        if meta_path.is_file():
            try:
                previous = json.loads(meta_path.read_text(encoding="utf-8")).get("key")
            except (OSError, ValueError):
                previous = None
        if previous != self.key:
            if self.features.exists():
                logger.warning(
                    "feature cache %s was made by another encoder or with other "
                    "options: emptying it",
                    self.folder,
                )
                shutil.rmtree(self.features, ignore_errors=True)
            meta = {"key": self.key, "fingerprint": fingerprint, "dtype": str(dtype)}
            self._atomic_write(
                meta_path, json.dumps(meta, indent=1, default=str).encode()
            )

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def path(self, uid: str) -> Path:
        """The file of utterance ``uid`` (hashed: IDs may hold any character)."""
        h = hashlib.sha1(str(uid).encode()).hexdigest()
        return self.features / h[:2] / f"{h}.pt"

    def load(self, uid: str, num_samples: int) -> torch.Tensor | None:
        """The cached states of ``uid``, or None (absent, stale or unreadable)."""
        path = self.path(uid)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file is recomputed
            return None
        if entry.get("id") != str(uid) or entry.get("num_samples") != int(num_samples):
            return None
        return entry["feats"]

    def save(self, uid: str, feats: torch.Tensor, num_samples: int) -> None:
        """Store ``feats`` ``[num_states, frames, feature]`` for ``uid``."""
        path = self.path(uid)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(
                    {
                        "id": str(uid),
                        "num_samples": int(num_samples),
                        "feats": feats.detach().to("cpu", self.dtype).contiguous(),
                    },
                    f,
                )
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


# --------------------------------------------------------------------------- #
# The frozen encoder
# --------------------------------------------------------------------------- #


class SSLEncoder(nn.Module):
    """A frozen SSL encoder returning all its hidden states.

    Parameters never require gradients, the forward pass runs under
    ``torch.no_grad()``, and the module stays in eval mode even when a Brain
    calls ``.train()`` on everything (no dropout, no layer drop, no masking).

    Arguments
    ---------
    backend : SSLUpstream
        The upstream (:func:`~speechbrain_wsm.models.upstream.load_upstream`);
        frozen here if it is not yet.
    feature_cache_dir : str, optional
        Cache the states per utterance here (see :class:`FeatureCache`); used
        when ``forward`` is given utterance IDs.
    source : str, optional
        Where the encoder came from (for messages).

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Encoder
    >>> net = Wav2Vec2Encoder.small("wsm")
    >>> encoder = SSLEncoder(SSLUpstream(net)).train()
    >>> states = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> len(states), states[0].shape, encoder.training, states[-1].requires_grad
    (3, torch.Size([2, 46, 16]), False, False)
    """

    def __init__(
        self,
        backend: SSLUpstream,
        feature_cache_dir: str | os.PathLike | None = None,
        source: str | None = None,
    ):
        super().__init__()
        self.backend = backend.freeze()
        self.num_hidden_states = int(backend.num_hidden_states)
        self.hidden_size = int(backend.hidden_size)
        self.source = source
        fingerprint = dict(getattr(backend, "fingerprint", {}) or {})
        self.cache = (
            FeatureCache(feature_cache_dir, fingerprint) if feature_cache_dir else None
        )
        super().train(False)

    def train(self, mode: bool = True):
        """Stay in eval mode: the encoder is frozen."""
        return super().train(False)

    def output_lengths(self, samples) -> torch.Tensor:
        """Frames the encoder makes of ``samples`` input samples."""
        return self.backend.output_lengths(samples)

    @torch.no_grad()
    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[torch.Tensor]:
        """All hidden states of a waveform batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, sample]`` 16 kHz audio.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths (None: no padding).
        ids : sequence of str, optional
            Utterance IDs; with a feature cache, cached states are read
            instead of running the encoder and new ones are stored. Leave
            None when the audio of an ID changes between epochs (random
            crops, augmentation).

        Returns
        -------
        list of torch.Tensor
            ``num_hidden_states`` tensors ``[batch, frame, hidden_size]``
            (float32 when cached; the cache's precision then holds on every
            epoch, the first included).
        """
        if wavs.dim() != 2:
            raise ValueError(
                f"expected a waveform batch [batch, sample], got {tuple(wavs.shape)}"
            )
        if wav_lens is None:
            samples = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
        else:
            samples = relative_to_absolute(wav_lens, wavs.shape[1])
        samples = samples.to(wavs.device)
        if self.cache is None or ids is None:
            states, _ = self.backend(wavs, samples)
            return states
        return self._cached_forward(wavs, samples, list(ids))

    def _cached_forward(self, wavs, samples, ids):
        if len(ids) != wavs.shape[0]:
            raise ValueError(f"{len(ids)} IDs for a batch of {wavs.shape[0]}")
        samples = samples.cpu()
        frames = self.output_lengths(samples)
        total = int(self.output_lengths(wavs.shape[1]))
        feats = [self.cache.load(uid, int(n)) for uid, n in zip(ids, samples)]
        missing = [
            i
            for i, f in enumerate(feats)
            if f is None
            or f.shape[0] != self.num_hidden_states
            or f.shape[1] != int(frames[i])
        ]
        if missing:
            longest = int(samples[missing].max())
            states, _ = self.backend(
                wavs[missing, :longest], samples[missing].to(wavs.device)
            )
            stacked = torch.stack(states)  # [state, batch, frame, feature]
            for j, i in enumerate(missing):
                f = stacked[:, j, : int(frames[i])].to("cpu", self.cache.dtype)
                self.cache.save(ids[i], f, int(samples[i]))
                feats[i] = f
        out = torch.zeros(
            self.num_hidden_states,
            wavs.shape[0],
            total,
            self.hidden_size,
            device=wavs.device,
        )
        for i, f in enumerate(feats):
            out[:, i, : f.shape[1]] = f.to(wavs.device, torch.float32)
        return list(out.unbind(0))


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def load_ssl_encoder(
    ssl_source,
    feature_cache_dir=None,
    checkpoint=None,
    device: str | torch.device = "cpu",
    normalize_wav: bool | None = None,
    attention_mask: bool | None = None,
) -> SSLEncoder:
    """Load a frozen SSL encoder from a local folder.

    Arguments
    ---------
    ssl_source, checkpoint, normalize_wav, attention_mask
        Passed to :func:`~speechbrain_wsm.models.upstream.load_upstream`,
        which documents them (Hugging Face input options default to how the
        checkpoint was pretrained).
    feature_cache_dir : str, optional
        Cache hidden states per utterance there (see :class:`FeatureCache`).
    device : str or torch.device
        Where the encoder goes (a Brain moves it again to its device).

    Returns
    -------
    SSLEncoder
        Frozen, in eval mode: ``encoder(wavs, wav_lens, ids=None)`` is the
        list of ``encoder.num_hidden_states`` states ``[batch, frame,
        encoder.hidden_size]``.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`~speechbrain_wsm.models.upstream.load_upstream`.

    Example
    -------
    >>> encoder = load_ssl_encoder("results/wav2vec2_wsm_w32/1986")  # doctest: +SKIP
    >>> states = encoder(wavs, wav_lens)  # doctest: +SKIP
    """
    upstream = load_upstream(
        ssl_source,
        frozen=True,
        checkpoint=checkpoint,
        normalize_wav=normalize_wav,
        attention_mask=attention_mask,
    )
    encoder = SSLEncoder(upstream, feature_cache_dir, source=str(ssl_source))
    return encoder.to(device)


# --------------------------------------------------------------------------- #
# The probe
# --------------------------------------------------------------------------- #


class SSLProbe(nn.Module):
    """Frozen encoder -> weighted layer sum -> trainable head.

    Arguments
    ---------
    ssl_encoder : SSLEncoder
        The frozen encoder.
    head : nn.Module
        ``head(features [batch, frame, hidden_size])`` or ``head(features,
        lengths=wav_lens)`` (SpeechBrain RNNs, poolings, ECAPA-TDNN,
        ``LengthsCapableSequential``); a tuple output keeps its first element.
    weighted_sum : WeightedLayerSum, optional
        The fusion (default: a new one over all states, ``layer_norm``).
    layer_norm : bool
        Normalise each state before weighting (when ``weighted_sum`` is None).

    Example
    -------
    >>> from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Encoder
    >>> net = Wav2Vec2Encoder.small("sm")
    >>> probe = SSLProbe(SSLEncoder(SSLUpstream(net)), nn.Linear(16, 5))
    >>> out, lens = probe(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> out.shape, sorted(n for n, p in probe.named_parameters() if p.requires_grad)
    (torch.Size([2, 46, 5]), ['head.bias', 'head.weight', 'weighted_sum.weights'])
    """

    def __init__(
        self,
        ssl_encoder: SSLEncoder,
        head: nn.Module,
        weighted_sum: WeightedLayerSum | None = None,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.ssl_encoder = ssl_encoder
        if weighted_sum is None:
            weighted_sum = WeightedLayerSum(ssl_encoder.num_hidden_states, layer_norm)
        if weighted_sum.num_layers != ssl_encoder.num_hidden_states:
            raise UserValueError(
                f"weighted_sum combines {weighted_sum.num_layers} states but the "
                f"encoder gives {ssl_encoder.num_hidden_states}"
            )
        self.weighted_sum = weighted_sum
        self.head = head
        self._lengths_arg = lengths_arg_name(head.forward)

    def features(self, wavs, wav_lens=None, ids=None) -> torch.Tensor:
        """The fused features ``[batch, frame, hidden_size]``."""
        return self.weighted_sum(self.ssl_encoder(wavs, wav_lens, ids=ids))

    def frame_lens(self, wav_lens: torch.Tensor, samples: int, frames: int):
        """Relative lengths over the encoder's frames, from its own frame counts.

        The front end makes fewer frames of a short utterance than its share
        of the padded batch (about ``n / 320 - 2.7``, not ``n / 320``): a 1 s
        utterance in a 10 s batch has 46 real frames, not 50, and the head,
        CTC and decoding must not read the 4 computed on padding.

        Arguments
        ---------
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths over ``samples`` padded samples.
        samples : int
            Samples of the padded batch.
        frames : int
            Frames of the feature tensor.
        """
        absolute = relative_to_absolute(wav_lens.cpu(), samples)
        real = self.ssl_encoder.output_lengths(absolute).float()
        return (real / max(frames, 1)).clamp(max=1.0).to(wav_lens.device)

    def forward(self, wavs, wav_lens=None, ids=None):
        """``wavs`` ``[batch, sample]``, ``wav_lens`` ``[batch]`` relative ->
        ``(head output, frame_lens)``: relative lengths over the frames, from
        the encoder's own output lengths (:meth:`frame_lens`); ``ids`` feed the
        feature cache."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        x = self.features(wavs, wav_lens, ids)
        lens = self.frame_lens(wav_lens, wavs.shape[1], x.shape[1])
        if self._lengths_arg is not None:
            out = self.head(x, **{self._lengths_arg: lens})
        else:
            out = self.head(x)
        if isinstance(out, tuple):
            out = out[0]
        return out, lens
