"""Loading a pretrained model or encoder from a pretraining recipe's output folder."""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import numpy as np
import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_wsm.errors import UserFileNotFoundError
from speechbrain_wsm.models.wav2vec2.model import Wav2Vec2Encoder, Wav2Vec2Pretrainer

logger = logging.getLogger(__name__)


def _model_yaml(hparams_file: Path, key: str) -> str:
    """The definition of top-level ``key`` of a resolved hyperparams file."""
    yaml = ruamel.yaml.YAML()
    with open(hparams_file, encoding="utf-8") as f:
        tree = yaml.load(f)
    if not isinstance(tree, dict) or key not in tree:
        keys = ", ".join(map(str, tree)) if isinstance(tree, dict) else ""
        raise KeyError(f"{hparams_file} has no top-level '{key}' (keys: {keys})")
    out = io.StringIO()
    yaml.dump({key: tree[key]}, out)
    return out.getvalue()


def find_checkpoint(folder, checkpoint=None, key: str = "wav2vec2") -> Path:
    """The weights file of ``key`` in a recipe's output folder.

    Arguments
    ---------
    folder : str or Path
        The recipe's output folder (holding ``save/CKPT+*``).
    checkpoint : str or Path, optional
        A ``CKPT+...`` folder or a ``.ckpt`` file; default the most recent
        complete checkpoint in ``<folder>/save`` (a broken one, left by a run
        killed while saving, is skipped with a warning).
    key : str
        Name of the module in the checkpointer.

    Returns
    -------
    Path
        ``<checkpoint>/<key>.ckpt``.
    """
    if checkpoint is not None:
        path = Path(checkpoint)
        path = path / f"{key}.ckpt" if path.is_dir() else path
        if not path.is_file():
            raise UserFileNotFoundError(f"no checkpoint file {path}")
        return path
    save = Path(folder) / "save"
    found = None
    if save.is_dir():
        # the newest *complete* one: a save killed half-way is skipped (warning)
        from speechbrain_wsm.recipe.checkpoints import newest_complete_checkpoint

        found = newest_complete_checkpoint(save, lambda c: key in c.paramfiles)
    if found is None:
        raise UserFileNotFoundError(
            f"no checkpoint with {key}.ckpt under {save}: has the recipe run "
            "(and saved at an epoch end or at --ckpt_interval_minutes)?"
        )
    return Path(found.paramfiles[key])


def load_pretrained_model(
    folder,
    checkpoint=None,
    device="cpu",
    key: str = "wav2vec2",
    hparams_file: str = "hyperparams.yaml",
) -> Wav2Vec2Pretrainer:
    """Rebuild a pretraining recipe's whole model and load its weights.

    The model is rebuilt from the definition of ``key`` in the resolved
    ``<folder>/hyperparams.yaml`` that the recipe writes (only that entry is
    instantiated: no data, optimiser or seed side effects), then the weights of
    the most recent checkpoint (or ``checkpoint``) are loaded. See
    :func:`load_pretrained_encoder` for the encoder alone.

    Returns
    -------
    Wav2Vec2Pretrainer
        In eval mode, on ``device``.
    """
    folder = Path(folder)
    hparams_path = folder / hparams_file
    if not hparams_path.is_file():
        raise UserFileNotFoundError(
            f"{hparams_path} not found: pass the recipe's output folder "
            "(results/wav2vec2_<mixer>/<seed>)"
        )
    weights = find_checkpoint(folder, checkpoint, key)
    # Building the model draws random initial weights: leave the caller's
    # random streams as they were.
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        model = load_hyperpyyaml(_model_yaml(hparams_path, key))[key]
    random.setstate(states[0])
    np.random.set_state(states[1])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    logger.info("loaded %s from %s", key, weights)
    return model.to(device).eval()


def load_pretrained_encoder(
    folder,
    checkpoint=None,
    device="cpu",
    freeze: bool = False,
    key: str = "wav2vec2",
) -> Wav2Vec2Encoder:
    """Load the pretrained encoder of a wav2vec 2.0 recipe run.

    The interface downstream recipes (MP3S probing, selective fine-tuning)
    use. ``folder`` is the pretraining output folder, e.g.
    ``results/wav2vec2_wsm_w32/1986``: the model is rebuilt from the resolved
    ``hyperparams.yaml`` there, so any mixer, size or front end loads without
    extra configuration, and the weights come from the most recent
    checkpoint in ``<folder>/save`` (or ``checkpoint``, a ``CKPT+...``
    folder).

    Arguments
    ---------
    folder : str or Path
        The recipe's output folder.
    checkpoint : str or Path, optional
        A specific ``CKPT+...`` folder (or ``wav2vec2.ckpt`` file).
    device : str or torch.device
        Where to put the encoder.
    freeze : bool
        Set ``requires_grad=False`` on every parameter.
    key : str
        The model's key in the hyperparams and checkpoints.

    Returns
    -------
    Wav2Vec2Encoder
        In eval mode. ``encoder(wav, lengths) -> (output, hidden_states,
        frame_lengths)``: ``wav`` ``[batch, sample]`` 16 kHz audio,
        ``lengths`` ``[batch]`` valid samples (or None); ``output``
        ``[batch, frame, d_model]`` at 20 ms frames; ``hidden_states`` the
        ``num_layers + 1`` tensors of the same shape (encoder input and every
        layer), as MP3S's weighted layer sum needs; ``frame_lengths``
        ``[batch]`` valid frames. ``encoder.num_layers`` and
        ``encoder.d_model`` give the sizes.

    Example
    -------
    In a downstream recipe (``wavs`` ``[batch, sample]``, ``wav_lens``
    relative lengths)::

        from speechbrain_wsm.models.lengths import relative_to_absolute
        from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder

        encoder = load_pretrained_encoder("results/wav2vec2_wsm_w32/1986", freeze=True)
        samples = relative_to_absolute(wav_lens, wavs.shape[1])
        output, hidden_states, frames = encoder(wavs, samples)
    """
    encoder = load_pretrained_model(folder, checkpoint, device, key).encoder
    if freeze:
        encoder.requires_grad_(False)
    return encoder
