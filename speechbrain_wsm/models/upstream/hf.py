"""Everything the project knows about Hugging Face speech encoders, in one place.

Hugging Face wav2vec 2.0 / HuBERT / WavLM models differ from this project's
encoders in three ways that the rest of the package must not care about:

* **input**: a checkpoint was pretrained either on raw waveforms (group-norm
  front ends, the ``base`` models) or on waveforms standardised per utterance
  (layer-norm front ends, ``large``/``lv60``); ``preprocessor_config.json``
  says which when it is there (:func:`hf_input_options`,
  :func:`hf_model_inputs`);
* **padding**: the model takes an ``attention_mask`` over *samples* (1 =
  valid) and turns it into whatever its attention implementation wants
  (``[B, 1, T, T]`` additive or boolean, or ``[B, T]``); a module put in place
  of a layer's attention reads it back with :func:`hf_padding_mask`;
* **frames**: the number of output frames of ``n`` samples comes from the
  model's own convolution arithmetic (:func:`hf_output_lengths`);
* **freezing**: the feature encoder keeps a flag of its own that must follow
  its weights (:func:`sync_hf_front_end_flags`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.lengths import lengths_to_padding_mask, standardize
from speechbrain_wsm.nnet.layer_stack import HF_MODEL_TYPES

__all__ = [
    "HF_LATE_PARAMETERS",
    "HF_MODEL_TYPES",
    "HF_NORMALIZE_EPS",
    "hf_input_options",
    "hf_model_from_config",
    "hf_model_inputs",
    "hf_output_lengths",
    "hf_padding_mask",
    "load_hf_model",
    "sync_hf_front_end_flags",
]

#: Parameters a Hugging Face SSL model owns but uses only after one of its
#: children ran, with that child: ``masked_spec_embed`` is applied to the
#: output of ``feature_projection`` (what the no-grad prefix of the surgery
#: must know to turn autograd on in time).
HF_LATE_PARAMETERS = {"masked_spec_embed": "feature_projection"}

#: Variance floor of Hugging Face's waveform standardisation (``do_normalize``).
HF_NORMALIZE_EPS = 1e-7


def hf_input_options(folder) -> tuple[bool, bool]:
    """``(normalize_wav, attention_mask)``: how a checkpoint wants its input.

    ``preprocessor_config.json``'s ``do_normalize`` and
    ``return_attention_mask`` when it gives them; otherwise both on for
    layer-norm front ends (``feat_extract_norm: layer``, how the ``large``
    models were pretrained) and both off for group-norm ones (``base``).

    Arguments
    ---------
    folder : str or Path
        A Hugging Face model folder (``config.json``).

    Returns
    -------
    tuple of bool

    Example
    -------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> for norm in ("group", "layer"):
    ...     config = json.dumps({"feat_extract_norm": norm})
    ...     _ = (folder / "config.json").write_text(config)
    ...     print(norm, hf_input_options(folder))
    group (False, False)
    layer (True, True)
    """
    folder = Path(folder)
    config = read_json(folder / "config.json")
    layer_norm_front = config.get("feat_extract_norm", "group") == "layer"
    preprocessor = {}
    pre_path = folder / "preprocessor_config.json"
    if pre_path.is_file():
        preprocessor = read_json(pre_path)
    return (
        bool(preprocessor.get("do_normalize", layer_norm_front)),
        bool(preprocessor.get("return_attention_mask", layer_norm_front)),
    )


def read_json(path) -> dict:
    """A JSON object file of a model folder; a damaged one is a clear error.

    Raises
    ------
    ValueError
        Naming the file, where it stops parsing, and the fix.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "config.json"
    >>> _ = path.write_text('{"model_type": "hub')
    >>> read_json(path)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: ...config.json is not valid JSON (line 1, column ...): ...
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = (
            f"line {e.lineno}, column {e.colno}: {e.msg}"
            if isinstance(e, json.JSONDecodeError)
            else str(e)
        )
        raise UserValueError(
            f"{path} is not valid JSON ({where}): the model folder is damaged "
            "(an interrupted copy or download?); copy it again, or save the "
            "model again with save_pretrained"
        ) from None
    if not isinstance(value, dict):
        raise UserValueError(
            f"{path} must hold a JSON object, not {type(value).__name__}"
        )
    return value


def _check_speech_config(config, folder) -> None:
    if not hasattr(config, "conv_stride"):
        raise UserValueError(
            f"ssl_source '{folder}' is a {config.model_type!r} model; expected a "
            "speech encoder with a convolutional front end (wav2vec2, hubert, "
            "wavlm, data2vec-audio)"
        )


def load_hf_model(folder, config_overrides: dict | None = None) -> nn.Module:
    """The base model (``Wav2Vec2Model`` ...) of a local Hugging Face folder.

    Arguments
    ---------
    folder : str or Path
        ``config.json`` and weights, as ``save_pretrained`` writes them (a
        ``...ForCTC`` folder loads its base model).
    config_overrides : dict, optional
        Config values (``layerdrop``, ``mask_time_prob``,
        ``attn_implementation`` ...).

    Returns
    -------
    torch.nn.Module
        In eval mode.

    Raises
    ------
    ValueError
        When the folder holds no speech encoder with a convolutional front end.
    """
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:  # pragma: no cover - transformers is a dev extra
        raise ImportError(
            f"ssl_source '{folder}' is a Hugging Face folder: install transformers"
        ) from exc
    read_json(Path(folder) / "config.json")  # a damaged file: name it
    _check_speech_config(AutoConfig.from_pretrained(str(folder)), folder)
    model = AutoModel.from_pretrained(str(folder), **(config_overrides or {}))
    return model.base_model.eval()


def hf_model_from_config(folder, config_overrides: dict | None = None) -> nn.Module:
    """A freshly initialised base model built from the ``config.json`` in ``folder``.

    For rebuilding a model whose weights come from elsewhere (a saved
    fine-tuned state dict).
    """
    from transformers import AutoConfig, AutoModel

    read_json(Path(folder) / "config.json")  # a damaged file: name it
    config = AutoConfig.from_pretrained(str(folder), **(config_overrides or {}))
    _check_speech_config(config, folder)
    return AutoModel.from_config(config).base_model


def sync_hf_front_end_flags(model: nn.Module) -> None:
    """Keep HF feature encoders' ``_requires_grad`` flag in line with their weights.

    A Hugging Face feature encoder whose flag says trainable marks its input
    as requiring grad in training; with frozen weights that is wasted work.
    Call after freezing or unfreezing parts of ``model`` (any module holding
    Hugging Face models; others are left alone).
    """
    for module in model.modules():
        if hasattr(module, "_requires_grad") and hasattr(module, "conv_layers"):
            module._requires_grad = any(p.requires_grad for p in module.parameters())


def hf_output_lengths(model: nn.Module, samples) -> torch.Tensor:
    """Frames a Hugging Face model makes of ``samples`` input samples (long)."""
    lengths = model._get_feat_extract_output_lengths(torch.as_tensor(samples))
    return torch.as_tensor(lengths).long()


def hf_model_inputs(
    wavs: torch.Tensor,
    lengths: torch.Tensor,
    normalize_wav: bool = False,
    attention_mask: bool = True,
) -> tuple[torch.Tensor, dict]:
    """``input_values`` and keyword arguments for a Hugging Face model's forward.

    Padded samples are zeroed; each utterance is standardised over its valid
    samples when ``normalize_wav``; the sample-level ``attention_mask`` (1 =
    valid) is passed when ``attention_mask``.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, sample]`` audio.
    lengths : torch.Tensor
        ``[batch]`` absolute lengths in samples.
    normalize_wav, attention_mask : bool
        See :func:`hf_input_options`.

    Returns
    -------
    input_values : torch.Tensor
        ``[batch, sample]`` float32.
    kwargs : dict
        ``{"attention_mask": [batch, sample] long}`` or empty.

    Example
    -------
    >>> x, kw = hf_model_inputs(torch.ones(2, 4), torch.tensor([4, 2]))
    >>> x.tolist(), kw["attention_mask"].tolist()
    ([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], [[1, 1, 1, 1], [1, 1, 0, 0]])
    """
    pad = lengths_to_padding_mask(lengths, wavs.shape[1])
    wavs = wavs.float().masked_fill(pad, 0.0)
    if normalize_wav:
        wavs = standardize(wavs, lengths, eps=HF_NORMALIZE_EPS)
    kwargs = {"attention_mask": (~pad).long()} if attention_mask else {}
    return wavs, kwargs


def hf_padding_mask(attention_mask, shape: Sequence[int]) -> torch.Tensor | None:
    """Turn the mask a Hugging Face layer passes to its attention into ``[B, T]`` padding.

    Arguments
    ---------
    attention_mask : torch.Tensor or None
        What the layer received: None (no padding); ``[B, T]`` with 1/True =
        valid frame (flash attention, WavLM); ``[B, 1, T, T]`` bool with True =
        may attend (SDPA); or ``[B, 1, T, T]`` float, additive, 0 = may attend
        and a large negative number = masked (eager attention).
    shape : sequence of int
        ``(batch, frames)`` of the hidden states.

    Returns
    -------
    torch.Tensor or None
        ``[batch, frame]`` bool, True = padding; None when nothing is padded.

    Example
    -------
    >>> valid = torch.tensor([[1, 1, 1], [1, 1, 0]])
    >>> hf_padding_mask(valid, (2, 3))
    tensor([[False, False, False],
            [False, False,  True]])
    >>> additive = torch.zeros(2, 1, 3, 3)
    >>> additive[1, :, :, 2] = torch.finfo(torch.float32).min
    >>> hf_padding_mask(additive, (2, 3)).tolist()
    [[False, False, False], [False, False, True]]
    >>> hf_padding_mask(torch.ones(2, 3), (2, 3)) is None
    True
    """
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            f"cannot read padding from a {type(attention_mask).__name__} attention "
            "mask (flex attention?): load the model with "
            "attn_implementation='sdpa' or 'eager'"
        )
    if attention_mask.dim() == 2:
        pad = attention_mask == 0
    elif attention_mask.dim() == 4:
        if attention_mask.dtype == torch.bool:
            allowed = attention_mask
        else:
            allowed = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        # A key frame is padding when no query may attend to it.
        pad = ~allowed.any(dim=-2)[:, 0]
    else:
        raise ValueError(
            "expected an attention mask of shape [batch, frame] or "
            f"[batch, 1, frame, frame], got {tuple(attention_mask.shape)}"
        )
    if tuple(pad.shape) != tuple(shape):
        raise ValueError(
            f"attention mask of shape {tuple(attention_mask.shape)} does not match "
            f"hidden states of [batch, frame] = {tuple(shape)}"
        )
    return pad if bool(pad.any()) else None
