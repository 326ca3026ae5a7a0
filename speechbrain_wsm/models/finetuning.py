"""CTC fine-tuning of pretrained SSL encoders, whole or selectively.

The pretrained model comes from ``ssl_source`` through the one SSL upstream
(:mod:`speechbrain_wsm.models.upstream`): a local Hugging Face wav2vec 2.0,
HuBERT or WavLM folder (base or ``ForCTC``: the base model is kept), this
project's wav2vec 2.0 pretraining output folder (``hyperparams.yaml`` +
``save/CKPT+*``), or an earlier fine-tuning's export; no hub.

:func:`build_finetuner` loads a model, applies a selective fine-tuning mode
(:func:`speechbrain_wsm.models.surgery.apply_finetuning_mode`) and adds the
head; :func:`load_finetuned` rebuilds a model that
:func:`~speechbrain_wsm.models.ssl_ctc.save_finetuned` stored (architecture
from the recorded build arguments, weights from the saved state dict). The
model classes and the folder format are in :mod:`speechbrain_wsm.models.ssl_ctc`.
"""

from __future__ import annotations

from speechbrain_wsm.models.ssl_ctc import (
    CTCFineTuner,
    assemble_finetuner,
    rebuild_finetuned,
)
from speechbrain_wsm.models.upstream import (
    hf_input_options,
    load_trainable_ssl,
    source_kind,
)

__all__ = ["build_finetuner", "load_finetuned"]


def build_finetuner(
    ssl_source,
    vocab_size: int,
    mode: str = "wsm",
    num_layers: int = 2,
    mixer_kwargs: dict | None = None,
    freeze_front_end: bool = True,
    head_dropout: float = 0.1,
    normalize_wav: bool | None = None,
    hf_config_overrides: dict | None = None,
) -> CTCFineTuner:
    """Load ``ssl_source``, set up fine-tuning ``mode`` and add a CTC head.

    Arguments
    ---------
    ssl_source, normalize_wav, hf_config_overrides
        As :func:`~speechbrain_wsm.models.upstream.load_upstream` takes them;
        Hugging Face models always get the attention mask here.
    vocab_size : int
        CTC output units (blank at 0).
    mode : str
        ``full``, ``mhsa_top``, ``sm`` or ``wsm``
        (:func:`~speechbrain_wsm.models.surgery.apply_finetuning_mode`).
    num_layers : int
        N: top layers trained (``mhsa_top``) or replaced (``sm``, ``wsm``).
    mixer_kwargs : dict, optional
        New blocks' arguments (``window_size``, ``nhead``, ``dropout`` ...).
    freeze_front_end : bool
        ``full`` mode: keep the convolutional front end frozen.
    head_dropout : float
        Dropout before the CTC head.

    Returns
    -------
    CTCFineTuner
        With the head and the mode's modules trainable, everything else
        frozen, and the frozen start of the forward pass run without
        autograd. ``model.build_args`` holds the arguments (for
        :func:`~speechbrain_wsm.models.ssl_ctc.save_finetuned`),
        ``model.new_modules`` the names of the
        freshly initialised modules (new blocks and head).
    """
    args = dict(locals())
    if normalize_wav is None:
        hf = source_kind(ssl_source) == "hf"
        args["normalize_wav"] = hf and hf_input_options(ssl_source)[0]
    return assemble_finetuner(load_trainable_ssl(ssl_source, hf_config_overrides), args)


def load_finetuned(folder, device="cpu", ssl_source=None) -> CTCFineTuner:
    """Rebuild a model saved by :func:`~speechbrain_wsm.models.ssl_ctc.save_finetuned`.

    Arguments
    ---------
    folder : str or Path
        What ``save_finetuned`` wrote.
    device : str or torch.device
        Where to put the model.
    ssl_source : str, optional
        Where the pretrained model is now, for this project's encoders when
        it moved (Hugging Face encoders are rebuilt from the saved config).

    Returns
    -------
    CTCFineTuner
        In eval mode.
    """
    return rebuild_finetuned(folder, load_trainable_ssl, ssl_source).to(device)
