"""``ssl_source``: what kind of folder it is, and loading it."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from torch import nn

from speechbrain_wsm.errors import UserFileNotFoundError
from speechbrain_wsm.models.upstream.encoder import SSLUpstream
from speechbrain_wsm.models.upstream.hf import hf_input_options, load_hf_model
from speechbrain_wsm.models.wav2vec2 import find_checkpoint, load_pretrained_encoder

__all__ = [
    "load_ssl_model",
    "load_trainable_ssl",
    "load_upstream",
    "resolve_source",
    "source_fingerprint",
    "source_kind",
]

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".pth")

#: Where a recipe's run folder exports its encoder: LASER's ``<run>/model``
#: (a Hugging Face or pretraining-layout folder), selective fine-tuning's
#: ``<run>/finetuned`` (:func:`~speechbrain_wsm.models.ssl_ctc.save_finetuned`).
EXPORT_FOLDERS = ("model", "finetuned")


def _has_pretraining_checkpoint(folder: Path) -> bool:
    return any((folder / "save").glob("CKPT+*/wav2vec2.ckpt"))


def resolve_source(ssl_source) -> Path:
    """The folder to load for ``ssl_source``: itself, or the encoder a run exported.

    A recipe's run folder (``hyperparams.yaml`` but no pretraining checkpoint
    ``save/CKPT+*/wav2vec2.ckpt``) stands for the encoder it exported:
    LASER's ``<run>/model`` or selective fine-tuning's ``<run>/finetuned``.

    Raises
    ------
    UserFileNotFoundError
        A run folder that exported no encoder (yet): the message names the
        folders looked for.
    """
    folder = Path(ssl_source)
    if not (folder / "hyperparams.yaml").is_file() or _has_pretraining_checkpoint(
        folder
    ):
        return folder
    for name in EXPORT_FOLDERS:
        sub = folder / name
        if (
            any((sub / f).is_file() for f in ("config.json", "hyperparams.yaml"))
            or (sub / "finetuned.json").is_file()
        ):
            logger.info("ssl_source %s: the encoder its run exported, %s", folder, sub)
            return sub
    raise UserFileNotFoundError(
        f"ssl_source '{ssl_source}' is a run folder without a pretraining "
        "checkpoint (save/CKPT+*/wav2vec2.ckpt) and without an exported encoder: "
        f"LASER writes {folder / 'model'} and selective fine-tuning "
        f"{folder / 'finetuned'} when training ends; pass that folder once the "
        "run has finished"
    )


def source_kind(ssl_source) -> str:
    """``"project"``, ``"hf"`` or ``"finetuned"``: what kind of folder ``ssl_source`` is.

    A folder holding ``hyperparams.yaml`` is an output folder of this
    project's wav2vec 2.0 pretraining recipe (with ``save/CKPT+*``); one
    holding ``config.json`` is a local Hugging Face model folder; one holding
    ``finetuned.json`` is selective fine-tuning's export (its encoder is
    used). Pass a run folder through :func:`resolve_source` first.

    Raises
    ------
    FileNotFoundError
        If ``ssl_source`` is not a folder of either kind.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "config.json"), "w").write("{}")
    >>> source_kind(d)
    'hf'
    """
    folder = Path(ssl_source)
    if not folder.is_dir():
        raise UserFileNotFoundError(
            f"ssl_source '{ssl_source}' is not a folder: give a pretraining output "
            "folder (with hyperparams.yaml and save/CKPT+*) or a local Hugging "
            "Face model folder (with config.json); hub names are not supported"
        )
    if (folder / "hyperparams.yaml").is_file():
        return "project"
    if (folder / "config.json").is_file():
        return "hf"
    if (folder / "finetuned.json").is_file():
        return "finetuned"
    raise UserFileNotFoundError(
        f"ssl_source '{ssl_source}' is neither a Hugging Face model folder nor a "
        "wav2vec 2.0 pretraining output folder of this project: it holds neither "
        "hyperparams.yaml (pretraining output, with save/CKPT+*) nor config.json "
        f"(Hugging Face wav2vec2/HuBERT/WavLM); it holds {sorted(os.listdir(folder))}"
    )


def _file_stamp(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def source_fingerprint(ssl_source, checkpoint=None) -> dict:
    """What identifies the weights of ``ssl_source`` (for a feature cache).

    The resolved folder, and the name, size and modification time of the
    weight files (the chosen checkpoint of a pretraining folder; a Hugging
    Face folder's weights and a hash of its ``config.json``).
    """
    folder = resolve_source(ssl_source)
    if source_kind(folder) == "finetuned":
        weights = folder / "model.ckpt"
        return {
            "kind": "finetuned",
            "source": str(folder.resolve()),
            "stamp": _file_stamp(weights),
        }
    if source_kind(folder) == "project":
        weights = Path(find_checkpoint(folder, checkpoint))
        return {
            "kind": "project",
            "source": str(folder.resolve()),
            "weights": str(weights.resolve()),
            "stamp": _file_stamp(weights),
        }
    return {
        "kind": "hf",
        "source": str(folder.resolve()),
        "config": hashlib.sha1((folder / "config.json").read_bytes()).hexdigest(),
        "weights": sorted(
            _file_stamp(p) for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES
        ),
    }


def load_ssl_model(
    ssl_source, checkpoint=None, hf_config_overrides: dict | None = None
) -> nn.Module:
    """The pretrained model in ``ssl_source``, in eval mode.

    Arguments
    ---------
    ssl_source : str or Path
        See :func:`source_kind`.
    checkpoint : str, optional
        Pretraining output only: a ``CKPT+...`` folder instead of the most
        recent one.
    hf_config_overrides : dict, optional
        Hugging Face models only: config values (``layerdrop``,
        ``mask_time_prob``, ``attn_implementation`` ...).

    Returns
    -------
    torch.nn.Module
        The Hugging Face base model (``Wav2Vec2Model`` ...), or this project's
        :class:`~speechbrain_wsm.models.wav2vec2.Wav2Vec2Encoder`.
    """
    ssl_source = resolve_source(ssl_source)
    kind = source_kind(ssl_source)
    if kind == "hf":
        return load_hf_model(ssl_source, hf_config_overrides)
    if kind == "finetuned":
        return _finetuned_encoder(ssl_source).model
    if hf_config_overrides:
        logger.info("hf_config_overrides apply to Hugging Face models only")
    return load_pretrained_encoder(ssl_source, checkpoint)


def load_trainable_ssl(source, hf_config_overrides: dict | None = None) -> nn.Module:
    """:func:`load_ssl_model`, parameters trainable and in train mode.

    What fine-tuning starts from (and rebuilds a fine-tuned export on).

    Arguments
    ---------
    source : str or Path
        See :func:`source_kind`.
    hf_config_overrides : dict, optional
        Config values for Hugging Face models (``layerdrop``,
        ``mask_time_prob``, ``attn_implementation`` ...).

    Returns
    -------
    torch.nn.Module
        The Hugging Face base model (``Wav2Vec2Model`` ...), or the project's
        ``Wav2Vec2Encoder``; in train mode.
    """
    model = load_ssl_model(source, hf_config_overrides=hf_config_overrides)
    return model.requires_grad_(True).train()


def _finetuned_encoder(folder: Path):
    """The fine-tuned encoder (an :class:`SSLUpstream`) of a ``save_finetuned`` folder."""
    # imported here: ssl_ctc imports this package's modules (a module-level
    # import would find this package half initialised when ssl_ctc comes first)
    from speechbrain_wsm.models.ssl_ctc import rebuild_finetuned

    return rebuild_finetuned(folder, load_trainable_ssl).encoder


def load_upstream(
    ssl_source,
    frozen: bool = False,
    checkpoint=None,
    normalize_wav: bool | None = None,
    attention_mask: bool | None = None,
    hf_config_overrides: dict | None = None,
) -> SSLUpstream:
    """Load ``ssl_source`` as an :class:`SSLUpstream`.

    The one loader of a pretrained SSL model, and the reference for its
    options: the recipe loaders (``load_ssl_encoder``, ``build_finetuner``,
    ``build_laser``, ``build_fusion_model``) take ``ssl_source``,
    ``checkpoint``, ``normalize_wav``, ``attention_mask`` and
    ``hf_config_overrides`` as documented here.

    Arguments
    ---------
    ssl_source : str or Path
        An output folder of this project's pretraining recipe (the resolved
        ``hyperparams.yaml`` and ``save/CKPT+*``), or a local Hugging Face
        wav2vec 2.0 / HuBERT / WavLM folder (``config.json`` and weights, as
        ``save_pretrained`` writes them), or the run folder of a recipe that
        exports an encoder (LASER: ``<run>/model``; selective fine-tuning:
        ``<run>/finetuned``, whose fine-tuned encoder is used), see
        :func:`resolve_source`.
    frozen : bool
        Frozen (constant, eval mode, no autograd) or trainable (train mode).
    checkpoint : str, optional
        Pretraining output only: a ``CKPT+...`` folder instead of the most
        recent one.
    normalize_wav, attention_mask : bool, optional
        Hugging Face models only: standardise each utterance, pass the
        attention mask. Default: as the checkpoint was pretrained
        (:func:`~speechbrain_wsm.models.upstream.hf.hf_input_options`).
        This project's encoders standardise their input themselves and
        always mask padding.
    hf_config_overrides : dict, optional
        Hugging Face models only: config values (``layerdrop`` ...).

    Returns
    -------
    SSLUpstream
        On the CPU; ``upstream.fingerprint`` identifies the weights.

    Raises
    ------
    FileNotFoundError
        If ``ssl_source`` is not a folder of one of the two kinds, or a
        pretraining folder has no checkpoint.
    ValueError
        If a Hugging Face folder holds no speech encoder.

    Example
    -------
    >>> upstream = load_upstream("results/wav2vec2_wsm_w32/1986", frozen=True)  # doctest: +SKIP
    >>> hidden_states, frame_lengths = upstream(wavs, samples)  # doctest: +SKIP
    """
    folder = resolve_source(ssl_source)
    kind = source_kind(folder)
    if kind == "finetuned":  # the encoder of selective fine-tuning's export
        encoder = _finetuned_encoder(folder)
        normalize_wav = (
            encoder.normalize_wav if normalize_wav is None else normalize_wav
        )
        attention_mask = (
            encoder.attention_mask if attention_mask is None else attention_mask
        )
    elif kind == "hf":
        defaults = hf_input_options(folder)
        normalize_wav = defaults[0] if normalize_wav is None else normalize_wav
        attention_mask = defaults[1] if attention_mask is None else attention_mask
    else:
        if normalize_wav or attention_mask is False:
            logger.info(
                "normalize_wav/attention_mask apply to Hugging Face models only; "
                "the pretraining encoder standardises its input and masks padding"
            )
        normalize_wav, attention_mask = False, True
    fingerprint = source_fingerprint(folder, checkpoint)
    model = load_ssl_model(folder, checkpoint, hf_config_overrides)
    upstream = SSLUpstream(
        model, normalize_wav, attention_mask, frozen=frozen, fingerprint=fingerprint
    )
    if not frozen:
        upstream.requires_grad_(True).train()
    logger.info(
        "%s %s encoder from %s: %d hidden states of %d features",
        "frozen" if frozen else "trainable",
        kind,
        folder,
        upstream.num_hidden_states,
        upstream.hidden_size,
    )
    return upstream
